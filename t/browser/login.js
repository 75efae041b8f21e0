// t/browser/login.js - the mod_msm demo in a real browser (driven by t/80_browser.t).
//
//   node t/browser/login.js --url http://127.0.0.1:PORT --shots DIR --profile DIR
//   node t/browser/login.js --probe --profile DIR       (can chromium start here?)
//
// Debian's /usr/bin/chromium through playwright-core (no browser download). Steps:
//   1. open URL/, which leads to the login page; log in as demo/demo;
//   2. click +1 three times; print "STATE {json}" (user, counter, route, node, cookie);
//   3. wait for a line "reload" on stdin (the test kills a back end and a memcached
//      node meanwhile), reload; print "STATE {json}";
//   4. click +1; print "STATE {json}"; exit 0.
// Screenshots: DIR/01-login.png 02-counter3.png 03-after-failover.png 04-counter4.png
// (DIR/error.png on failure). Errors: "ERROR message" on stdout, exit 1.
// Every wait is bounded (page actions 15 s, the stdin line 90 s).
'use strict';

const path = require('path');
const readline = require('readline');
const { chromium } = require('playwright-core');

function arg(name, dflt) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const probe = process.argv.includes('--probe');
const url = arg('url', '');
const shots = arg('shots', '.');
const profile = arg('profile', '');
const executablePath = arg('chromium', '/usr/bin/chromium');

function say(tag, obj) {
  process.stdout.write(tag + (obj === undefined ? '' : ' ' + JSON.stringify(obj)) + '\n');
}

// the next line on stdin, or null after timeoutMs
const rl = readline.createInterface({ input: process.stdin });
const lines = [];
let waiter = null;
rl.on('line', (l) => { if (waiter) { const w = waiter; waiter = null; w(l); } else lines.push(l); });
rl.on('close', () => { if (waiter) { const w = waiter; waiter = null; w(null); } });
function nextLine(timeoutMs) {
  if (lines.length) return Promise.resolve(lines.shift());
  return new Promise((resolve) => {
    const t = setTimeout(() => { waiter = null; resolve(null); }, timeoutMs);
    waiter = (l) => { clearTimeout(t); resolve(l); };
  });
}

async function launch() {
  if (!profile) throw new Error('--profile DIR is required');
  return chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
    timeout: 30000,
  });
}

async function state(page, ctx) {
  const text = async (sel) => ((await page.textContent(sel)) || '').trim();
  const cookies = await ctx.cookies();
  const c = cookies.find((x) => x.name === 'MSMSESSION');
  return {
    url: page.url(),
    user: await text('#user'),
    counter: await text('#counter'),
    route: await text('#route'),
    node: await text('#node'),
    cookie: c ? c.value : null,
  };
}

async function clickIncr(page) {
  // +1 is a form POST answered with 303 to /app/: wait for that page to load
  await Promise.all([
    page.waitForNavigation({ waitUntil: 'load' }),
    page.click('#incr'),
  ]);
  await page.waitForSelector('#counter');
}

async function main() {
  if (probe) {
    const ctx = await launch();
    const page = await ctx.newPage();
    await page.setContent('<p id="x">ok</p>');
    const t = await page.textContent('#x');
    await ctx.close();
    say('PROBE', { ok: t === 'ok', version: ctx.browser() ? ctx.browser().version() : null });
    return;
  }
  if (!url) throw new Error('--url is required');
  const ctx = await launch();
  const page = ctx.pages()[0] || await ctx.newPage();
  page.setDefaultTimeout(15000);
  try {
    await page.goto(url + '/', { waitUntil: 'load' });
    // index.html refreshes to /app/, which sends an anonymous visitor to /login.html
    await page.waitForURL('**/login.html*');
    await page.waitForSelector('#password');
    await page.screenshot({ path: path.join(shots, '01-login.png') });
    await page.fill('#user', 'demo');
    await page.fill('#password', 'demo');
    await Promise.all([
      page.waitForURL('**/app/'),
      page.click('#login'),
    ]);
    await page.waitForSelector('#counter');
    say('LOGGEDIN', await state(page, ctx));
    for (let i = 0; i < 3; i++) await clickIncr(page);
    await page.screenshot({ path: path.join(shots, '02-counter3.png') });
    say('STATE', await state(page, ctx));

    const cmd = await nextLine(90000);
    if (cmd !== 'reload') throw new Error('expected "reload" on stdin, got ' + JSON.stringify(cmd));
    await page.reload({ waitUntil: 'load' });
    await page.waitForSelector('#counter');
    await page.screenshot({ path: path.join(shots, '03-after-failover.png') });
    say('STATE', await state(page, ctx));

    await clickIncr(page);
    await page.screenshot({ path: path.join(shots, '04-counter4.png') });
    say('STATE', await state(page, ctx));
  } catch (e) {
    try { await page.screenshot({ path: path.join(shots, 'error.png') }); } catch (e2) { /* none */ }
    try { say('PAGE', { url: page.url(), html: (await page.content()).slice(0, 2000) }); } catch (e3) { /* none */ }
    throw e;
  } finally {
    await ctx.close();
  }
}

main().then(() => { rl.close(); process.exit(0); })
  .catch((e) => { say('ERROR', String(e && e.stack || e).split('\n').slice(0, 6).join(' | ')); rl.close(); process.exit(1); });
