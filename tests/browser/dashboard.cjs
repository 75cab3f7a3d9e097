// Drives the dashboard of a running `switchyard demo --keep-running` in Debian's headless
// Chromium with playwright-core, the way an operator would: overview, open the failed run, read
// its class and hint, go to the egress page by keyboard and find the denial. Screenshots go to
// the artifacts directory. Exits 1 with the reason on the first expectation that does not hold.
//
// usage: node dashboard.cjs DASHBOARD_URL ARTIFACT_DIR   (playwright-core found through NODE_PATH)
"use strict";

const { chromium } = require("playwright-core");
const path = require("path");

const [url, artifacts] = process.argv.slice(2);
if (!url || !artifacts) {
  console.error("usage: node dashboard.cjs DASHBOARD_URL ARTIFACT_DIR");
  process.exit(2);
}
const origin = new URL(url).origin;

function expect(cond, what) {
  if (!cond) throw new Error(`expected ${what}`);
  console.log(`ok: ${what}`);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.SWITCHYARD_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  let failed = false;
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  const outside = [];
  const errors = [];
  page.on("request", (r) => { if (!r.url().startsWith(origin)) outside.push(r.url()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  // Failed requests are checked with their URLs below; Chromium's console line for them has none.
  page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text()); });
  const failedRequests = [];
  page.on("response", (r) => { if (r.status() >= 400) failedRequests.push(`${r.status()} ${r.url()}`); });
  const shot = (name) => page.screenshot({ path: path.join(artifacts, name), fullPage: true });
  try {
    await page.goto(url);
    await page.getByRole("heading", { name: "Jobs" }).waitFor({ timeout: 15000 });
    expect(!page.url().includes("token="), "the token to be gone from the address bar");
    const jobs = page.getByRole("table", { name: "Jobs" });
    for (const job of ["claims_pipeline", "serverless_fetch_attempt"]) {
      await jobs.getByRole("cell", { name: job, exact: true }).waitFor({ timeout: 5000 });
      expect(true, `job ${job} on the overview`);
    }
    const nodes = page.getByRole("table", { name: "Nodes" });
    await nodes.getByRole("cell", { name: "127.0.0.2", exact: true }).waitFor({ timeout: 5000 });
    expect(true, "the dedicated node with egress IP 127.0.0.2");
    const workers = await page.getByRole("img", { name: /Serverless workers per minute; peak [1-9]/ }).count();
    expect(workers === 1, "the serverless workers chart to show at least one worker in the last hour");
    await shot("overview.png");

    // The failed run: its failure row names the class; follow its link.
    const failure = page.locator("tr.failure", { hasText: "serverless_fetch" }).first();
    await failure.waitFor({ timeout: 5000 });
    expect((await failure.innerText()).includes("access"), "the failure's class (access) on the overview");
    await failure.getByRole("link").first().click();
    await page.getByRole("heading", { name: /^Run \d+: serverless_fetch/ }).waitFor({ timeout: 5000 });
    const task = page.locator("section.card[id^=task-]", { hasText: "failed" }).first();
    const text = await task.innerText();
    expect(text.includes("access"), "the failed task's class on the run page");
    expect(/Hint/.test(text) && /egress/.test(text), "a hint that talks about egress on the run page");
    expect(/serverless_no_egress|denied|refused|403/i.test(text), "the failure message saying the connection was refused");
    await page.locator("svg.dag").waitFor();
    expect(await page.locator("svg.dag a").count() >= 1, "the run's DAG");
    await shot("run-failed.png");

    // The healthy pipeline's run: placement reasons and expectation counts.
    await page.keyboard.press("1");
    await page.getByRole("heading", { name: "Jobs" }).waitFor();
    await page.getByRole("table", { name: "Jobs" }).getByRole("row", { name: /claims_pipeline/ }).getByRole("link").click();
    await page.getByRole("heading", { name: /^Run \d+: claims_pipeline/ }).waitFor({ timeout: 5000 });
    const body = await page.locator("main").innerText();
    expect(/allows only 127\.0\.0\.2|127\.0\.0\.2/.test(body), "placement on the 127.0.0.2 node in the pipeline's run");
    expect(/reads only lake tables/.test(body), "the plan's reason for serverless placement");
    expect(await page.getByRole("table", { name: "Expectations" }).count() >= 1, "expectation counts");
    await shot("run-pipeline.png");

    // Egress page, by keyboard: the denial of the serverless fetch.
    await page.keyboard.press("3");
    await page.getByRole("heading", { name: "Recent denials" }).waitFor({ timeout: 5000 });
    const denial = page.locator("tr.denial", { hasText: "serverless_fetch" }).first();
    await denial.waitFor({ timeout: 5000 });
    const d = await denial.innerText();
    expect(/serverless/.test(d) && /denied/.test(d), "the serverless fetch's denial with its egress IP and verdict");
    expect(await page.getByRole("table", { name: "Egress rules" }).getByRole("row").count() >= 2, "the egress rules");
    const identity = await page.getByRole("table", { name: "Client identities" }).getByRole("row", { name: /partner-demo/ }).innerText();
    const days = Number(identity.trim().split(/\s+/).pop());
    expect(days >= 19 && days <= 21, `the demo identity's days to expiry (${days}, expected about 21)`);
    await shot("egress.png");

    await page.keyboard.press("4");
    await page.getByRole("heading", { name: /^Cost/ }).waitFor({ timeout: 5000 });
    await shot("cost.png");

    expect(outside.length === 0, `no requests outside the control plane (saw ${outside.join(", ")})`);
    expect(errors.length === 0, `no script errors (saw ${errors.join(" | ")})`);
    expect(failedRequests.length === 0, `no failed requests (saw ${failedRequests.join(", ")})`);
  } catch (e) {
    failed = true;
    console.error(`FAILED: ${e.message}`);
    await shot("failure.png").catch(() => {});
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
})();
