// The end-to-end test's browser side: serves the page, Ruffle and the SWF on 127.0.0.1, opens
// the page in Debian's headless chromium (through playwright-core, which launches no browser of
// its own), waits a bounded time for the SWF's report, takes a screenshot, prints the report as
// one JSON line and checks what the SWF decoded. Exit status 0 when the report is as expected.
//
// node driver.mjs --http-port N --ws URL --leg NAME --swf FILE --node-dir DIR --screenshot FILE
//                 [--chromium PATH] [--timeout-ms N]
// where DIR holds package.json and node_modules as installed from this directory's lockfile.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { deepStrictEqual } from "node:assert";
import { createRequire } from "node:module";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, word, index, words) => {
    if (word.startsWith("--")) pairs.push([word.slice(2), words[index + 1]]);
    return pairs;
  }, []),
);
const here = dirname(fileURLToPath(import.meta.url));
const timeoutMs = Number(args["timeout-ms"] ?? 45000);
const require = createRequire(resolve(args["node-dir"], "package.json"));
const { chromium } = require("playwright-core");
const ruffleDir = join(args["node-dir"], "node_modules", "@ruffle-rs", "ruffle");

// What the SWF sent to echo (see swf/Main.hx): the echo must come back unchanged.
const SAMPLE = {
  text: "héllo wörld",
  n: 42,
  big: 536870912,
  neg: -7,
  pi: 3.25,
  flag: true,
  none: null,
  list: [1, "two", 3.5],
  nested: { text: "héllo wörld", deep: { k: "v" } },
};

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm",
  ".swf": "application/x-shockwave-flash", ".map": "application/json" };

/** Serves the page at /, the SWF at /client.swf and Ruffle under /ruffle/, nothing else. */
function pageServer() {
  return createServer(async (request, response) => {
    const path = new URL(request.url, "http://127.0.0.1").pathname;
    let file = null;
    if (path === "/") file = join(here, "page", "index.html");
    else if (path === "/client.swf") file = args.swf;
    else if (path.startsWith("/ruffle/")) {
      const name = normalize(path.slice("/ruffle/".length));
      if (!name.startsWith("..")) file = join(ruffleDir, name);
    }
    try {
      const body = await readFile(file ?? "/nonexistent");
      response.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
      response.end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
}

/** The flags from PROTOCOL.md section 4; playwright adds --headless and a fresh profile. */
const CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

function check(report) {
  const problems = [];
  const expect = (what, ok) => { if (!ok) problems.push(what); };
  expect(`status is "closed" (got ${JSON.stringify(report.status)})`, report.status === "closed");
  try { deepStrictEqual(report.echo, SAMPLE); } catch { problems.push(`echo came back as ${JSON.stringify(report.echo)}`); }
  expect(`ticks 0,1,2 (got ${JSON.stringify(report.ticks)})`, JSON.stringify(report.ticks) === "[0,1,2]");
  expect(`push replied {pushed: 3} (got ${JSON.stringify(report.pushed)})`, report.pushed?.pushed === 3);
  expect(`at least one ping answered (got ${report.pings})`, report.pings >= 1);
  return problems;
}

async function main() {
  const server = pageServer();
  await new Promise((resolve, reject) => server.listen(Number(args["http-port"]), "127.0.0.1", resolve).on("error", reject));
  const browser = await chromium.launch({
    executablePath: args.chromium ?? "/usr/bin/chromium",
    args: CHROMIUM_FLAGS,
    timeout: 30000,
  });
  let status = 1;
  try {
    const page = await browser.newPage({ viewport: { width: 840, height: 760 } });
    page.on("console", (message) => process.stderr.write(`[page ${message.type()}] ${message.text()}\n`));
    page.on("pageerror", (error) => process.stderr.write(`[page error] ${error}\n`));
    const url = `http://127.0.0.1:${args["http-port"]}/?leg=${encodeURIComponent(args.leg)}&ws=${encodeURIComponent(args.ws)}`;
    await page.goto(url, { timeout: 15000 });
    let report = null;
    try {
      const handle = await page.waitForFunction(() => window.amfReport, null, { timeout: timeoutMs });
      report = JSON.parse(await handle.jsonValue());
    } catch (error) {
      process.stderr.write(`no report from the SWF within ${timeoutMs} ms: ${error.message.split("\n")[0]}\n`);
    }
    await page.screenshot({ path: args.screenshot, fullPage: true });
    console.log(JSON.stringify(report));
    if (report) {
      const problems = check(report);
      for (const problem of problems) process.stderr.write(`the SWF's report is wrong: ${problem}\n`);
      status = problems.length === 0 ? 0 : 1;
    }
  } finally {
    await browser.close();
    server.close();
  }
  process.exit(status);
}

main().catch((error) => {
  process.stderr.write(`driver failed: ${error.stack ?? error}\n`);
  process.exit(1);
});
