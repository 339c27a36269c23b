// The live page in Firefox (ESR, headless, through puppeteer-core over
// WebDriver BiDi): loads the page a node serves, waits for every validator
// up and the height rising, pauses validator PAUSE (default: the last one)
// with the page's own button (a cross-origin admin call: the CORS
// preflight is Firefox's), sees it paused, and takes a screenshot.
// Run by scripts/page-firefox.sh; prints one JSON line, exits 1 on failure.
import puppeteer from 'puppeteer-core';

const [url, shot] = process.argv.slice(2);
const fail = (why) => { console.error('FAILED: ' + why); process.exit(1); };
const browser = await puppeteer.launch({
  browser: 'firefox', executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr', headless: true,
  defaultViewport: { width: 1400, height: 900 },
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(url);
  const read = () => page.evaluate(() => ({
    rows: [...document.querySelectorAll('#validators tr[data-validator]')]
      .map((r) => ({ v: r.dataset.validator, up: r.dataset.up === 'true', state: r.querySelector('.state')?.textContent || '' })),
    height: parseInt(document.getElementById('height').textContent, 10) || 0,
  }));
  const waitFor = async (what, ok, secs) => {
    const end = Date.now() + secs * 1000;
    for (;;) {
      const s = await read();
      if (ok(s)) return s;
      if (Date.now() > end) fail(`${what} not shown in ${secs} s: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  const first = await waitFor('every validator up', (s) => s.rows.length >= 4 && s.rows.every((r) => r.up) && s.height > 0, 30);
  await waitFor('the height rising', (s) => s.height >= first.height + 2, 30);
  const victim = process.env.PAUSE || String(first.rows.length - 1);
  const clicked = await page.evaluate((v) => {
    const b = document.querySelector(`#validators button.pause[data-validator="${v}"]`);
    if (!b) return false;
    b.click();
    return true;
  }, victim);
  if (!clicked) fail(`no pause button for validator ${victim}`);
  await waitFor(`validator ${victim} paused`, (s) => s.rows.some((r) => r.v === victim && /paused/.test(r.state)), 20);
  if (shot) await page.screenshot({ path: shot });
  if (errors.length) fail('page errors: ' + JSON.stringify(errors));
  console.log(JSON.stringify({ ok: true, browser: await browser.version(), validators: first.rows.length, paused: victim }));
} finally {
  await browser.close();
}
