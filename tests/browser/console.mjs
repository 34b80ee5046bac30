// The console end to end in headless Chromium, driven by tests/it/console.rs, which builds the
// world on the emulator, runs the daemon, and checks the world and the audit trail afterwards.
// Steps that need the world changed behind the browser's back print "WAITING <what>" and read a
// line from standard input before going on. Every failed expectation throws: exit code 1.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";

const base = process.env.CONSOLE_URL;
const token = process.env.CONSOLE_TOKEN;
const shots = process.env.SCREENSHOTS;
const labNodegroup002 = process.env.NODEGROUP_002;
const labNodegroup000 = process.env.NODEGROUP_000;
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(shots, { recursive: true });

const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
async function waitFor(what) {
  console.log(`WAITING ${what}`);
  const next = await lines.next();
  if (next.done || next.value.trim() !== "GO") throw new Error(`no go-ahead after ${what}`);
}

// Clicks a button that submits a form, and waits for the page the answer loads.
async function submit(page, button) {
  await Promise.all([page.waitForNavigation(), button.click()]);
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

async function eventually(what, seconds, check) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds}s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

const browser = await chromium.launch({
  executablePath: browserPath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const report = {};
try {
  // Without a session nothing is shown, and a decision is refused.
  const stranger = await browser.newContext();
  const strangerPage = await stranger.newPage();
  await strangerPage.goto(`${base}/console/`);
  expect(new URL(strangerPage.url()).pathname === "/console/login", `not sent to sign in: ${strangerPage.url()}`);
  expect(await strangerPage.locator("#incidents").count() === 0, "incidents shown without a session");
  const anonymous = await stranger.request.post(`${base}/console/plans/plan-0/approve`, {
    form: { csrf: "", reason: "drive-by" }, maxRedirects: 0,
  });
  report.unauthenticated_approve = anonymous.status();
  expect(anonymous.status() === 401, `an approval without a session answered ${anonymous.status()}`);
  const api = await stranger.request.get(`${base}/v1/plans`);
  expect(api.status() === 401, `the API without a token answered ${api.status()}`);
  await strangerPage.fill("#token", "not-a-token-at-all");
  await submit(strangerPage, strangerPage.locator("button[type=submit]"));
  expect(await strangerPage.locator("p.error").isVisible(), "a wrong token did not say so");
  await stranger.close();

  // Sign in.
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/console/login`);
  await page.fill("#token", token);
  await submit(page, page.locator("button[type=submit]"));
  expect(new URL(page.url()).pathname === "/console/", `not signed in: ${page.url()}`);
  expect((await page.textContent("#approver")).trim() === "alice", "the approver's name is not shown");

  // Health at a glance.
  for (const id of ["#mode", "#kill-switch", "#breakers", "#queue", "#last-receive", "#chain", "#ready", "#awaiting"]) {
    expect(await page.locator(id).count() === 1, `the health panel lacks ${id}`);
  }
  report.mode = (await page.textContent("#mode")).trim();
  report.chain = (await page.textContent("#chain")).trim();
  report.queue = (await page.textContent("#queue")).trim();
  expect(report.chain.startsWith("verified"), `chain: ${report.chain}`);
  await page.screenshot({ path: `${shots}/console-incidents.png`, fullPage: true });

  // A CSRF token from another session is refused even with a valid cookie.
  const forged = await context.request.post(`${base}/console/plans/plan-0/approve`, {
    form: { csrf: "00".repeat(32), reason: "forged" }, maxRedirects: 0,
  });
  report.forged_csrf = forged.status();
  expect(forged.status() === 403, `a forged CSRF token answered ${forged.status()}`);

  // Find lab 002's incident by filtering.
  await page.selectOption("select[name=cause]", "kms_key_policy_blocks_autoscaling");
  await submit(page, page.locator("form.filters button[type=submit]"));
  const rows = page.locator("#incidents tbody tr");
  expect(await rows.count() === 1, `the cause filter kept ${await rows.count()} incidents`);
  expect((await rows.first().textContent()).includes(labNodegroup002), "the filtered incident is not lab 002's");
  await submit(page, rows.first().locator("a"));
  expect((await page.textContent("#cause")).trim() === "kms_key_policy_blocks_autoscaling", "not lab 002's incident");

  // The diagnosis shows the whole checklist: the key check fails, the network is not looked at.
  const keyCheck = page.locator("tr.check[data-check='kms.volume_keys'] td.result");
  expect((await keyCheck.first().textContent()).trim() === "fail", "the key check does not fail");
  const routeCheck = page.locator("tr.check[data-check='net.default_route'] td.result");
  report.route_check = (await routeCheck.first().textContent()).trim();

  // Read the key policy's diff in the plan.
  const plan = page.locator("article.plan[data-status=awaiting_approval]");
  expect(await plan.count() === 1, "no plan awaiting approval on the incident");
  const added = await plan.locator("table.diff tr.added").allTextContents();
  const removed = await plan.locator("table.diff tr.removed").allTextContents();
  expect(added.some((l) => l.includes("AllowAutoScalingServiceRole")), `the diff lacks the new statement: ${added}`);
  expect(added.some((l) => l.includes("AWSServiceRoleForAutoScaling")), "the diff lacks the role");
  expect(added.some((l) => l.includes("kms:GrantIsForAWSResource")), "the diff lacks the grant condition");
  expect(removed.every((l) => l.replace(/[-\s]/g, "") === "}"), `the diff removes lines: ${removed}`);
  expect(await page.locator("a[href*='console.aws.amazon.com/kms/home']").count() > 0, "the key does not link to the AWS console");
  report.diff_added_lines = added.length;
  report.plan_id = await plan.getAttribute("data-plan");
  expect((await plan.locator(".time-left").textContent()).includes("left"), "no time left shown");
  await page.screenshot({ path: `${shots}/console-incident-plan.png`, fullPage: true });

  // Approve, and watch the fix land.
  await plan.locator("form.approve input[name=reason]").fill("lab 002 reviewed in the console");
  await submit(page, plan.locator("form.approve button"));
  expect((await page.textContent("#notice")).includes("Approved"), "no notice after approving");
  await eventually("the incident to be fixed", 90, async () => {
    await page.reload();
    return (await page.textContent("#outcome")).trim() === "fixed";
  });
  const timeline = await page.textContent("#timeline");
  expect(/approved\s+by\s+alice/.test(timeline), "the timeline does not say alice approved");
  expect(timeline.includes("lab 002 reviewed in the console"), "the approval's reason is missing");
  expect(await page.locator("li.record[data-kind=step_result] table.diff tr.added").count() > 0,
    "the applied step shows no before/after diff");
  expect(await page.locator("li.record[data-kind=verification] .good").count() > 0, "no passed verification");
  await page.screenshot({ path: `${shots}/console-incident-fixed.png`, fullPage: true });

  // Lab 000's plan: open it, let the world move behind the browser's back, then try to approve.
  await page.goto(`${base}/console/plans`);
  const card = page.locator(`article.plan[data-status=awaiting_approval]`, { hasText: labNodegroup000 });
  expect(await card.count() === 1, "lab 000's plan is not awaiting approval");
  report.stale_plan_id = await card.getAttribute("data-plan");
  await page.screenshot({ path: `${shots}/console-plans.png`, fullPage: true });
  console.log(`PLAN ${report.stale_plan_id}`);
  await waitFor("stale");
  await card.locator("form.approve input[name=reason]").fill("too late");
  await submit(page, card.locator("form.approve button"));
  const refusal = (await page.textContent("#refusal")).trim();
  report.stale_refusal = refusal;
  expect(refusal.includes("stale"), `approving the stale plan was not refused as stale: ${refusal}`);
  await page.goto(`${base}/console/plans`);
  const staleCard = page.locator(`article.plan[data-plan="${report.stale_plan_id}"]`);
  expect((await staleCard.getAttribute("data-status")) === "stale", "the plan is not shown stale");
  expect(await staleCard.locator("form.approve").count() === 0, "a stale plan still offers Approve");
  await page.screenshot({ path: `${shots}/console-stale.png`, fullPage: true });
  await context.close();

  // Reading needs no JavaScript: the same pages, with scripts off.
  const plain = await browser.newContext({ javaScriptEnabled: false });
  const plainPage = await plain.newPage();
  await plainPage.goto(`${base}/console/login`);
  await plainPage.fill("#token", token);
  await submit(plainPage, plainPage.locator("button[type=submit]"));
  expect(await plainPage.locator("#incidents tbody tr").count() >= 2, "without JavaScript the incidents are not listed");
  await submit(plainPage, plainPage.locator("#incidents tbody tr", { hasText: labNodegroup002 }).locator("a"));
  expect((await plainPage.textContent("#outcome")).trim() === "fixed", "without JavaScript the incident does not read");
  expect(await plainPage.locator("table.diff tr.added").count() > 0, "without JavaScript the diff is missing");
  await plain.close();
  console.log(`REPORT ${JSON.stringify(report)}`);
} finally {
  input.close();
  await browser.close();
}
