// The run detail of an `engine: distributed` transform in Debian's headless Chromium
// (playwright-core): the "Distributed on Ballista" section names the scheduler, the Ballista job,
// the executors, and lists the stages with their operators. A screenshot goes to the artifacts
// directory. Exits 1 with the reason on the first expectation that does not hold.
//
// usage: node distributed.cjs ORIGIN TOKEN RUN JOB_ID ARTIFACT_DIR   (playwright-core through NODE_PATH)
"use strict";

const { chromium } = require("playwright-core");
const path = require("path");

const [origin, token, run, job, artifacts] = process.argv.slice(2);
if (!artifacts) {
  console.error("usage: node distributed.cjs ORIGIN TOKEN RUN JOB_ID ARTIFACT_DIR");
  process.exit(2);
}

function expect(cond, what) {
  if (!cond) throw new Error(`expected ${what}`);
  console.log(`ok: ${what}`);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.SWITCHYARD_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  let failed = false;
  const page = await browser.newPage({ viewport: { width: 1366, height: 1200 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  try {
    await page.goto(`${origin}/#token=${encodeURIComponent(token)}`);
    await page.getByRole("heading", { name: "Jobs" }).waitFor({ timeout: 15000 });
    await page.goto(`${origin}/#/runs/${run}`);
    const section = page.getByRole("region", { name: "Distributed query" });
    await section.waitFor({ timeout: 15000 });
    const text = await section.innerText();
    expect(text.includes("Distributed on Ballista"), "the distributed section on the run page");
    expect(text.includes(job), `the Ballista job ${job}`);
    expect(/ran \d+ ms on the executors/.test(text), "how long the job ran on the executors");
    expect(/df:\/\/127\.0\.0\.1:\d+/.test(text), "the scheduler's address");
    expect(/ at 127\.0\.0\.1:\d+/.test(text), "an executor with its address");
    const stages = section.getByRole("table", { name: "Stages" }).locator("tbody tr");
    expect(await stages.count() >= 2, "at least two stages");
    expect(/AggregateExec/.test(text), "the stages' operators");
    await page.screenshot({ path: path.join(artifacts, "run-distributed.png"), fullPage: true });
    expect(errors.length === 0, `no page errors (${errors.join("; ")})`);
  } catch (e) {
    console.error(String(e));
    await page.screenshot({ path: path.join(artifacts, "run-distributed-failed.png"), fullPage: true }).catch(() => {});
    failed = true;
  }
  await browser.close();
  process.exit(failed ? 1 : 0);
})();
