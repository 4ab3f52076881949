// Headless Chromium for the browser tests, from the npm package @sparticuz/chromium: the
// package carries a brotli-compressed Chromium (headless shell) built for Lambda-like Linux,
// so it installs from the npm registry like any package and nothing is downloaded at run time.
//
// The binary is unpacked once per package version into the tools cache that scripts/setup
// uses (BOOKSTRACK_TOOLS_DIR, default ~/.cache/bookstrack-jobs), atomically, so an
// interrupted first run leaves nothing half-written behind. It needs glibc, libnss3 and
// libnspr4 from the system; when the dynamic linker cannot find them, the copies the package
// ships for Amazon Linux 2023 (al2023.tar.br) are put on LD_LIBRARY_PATH instead.

import chromium, { inflate } from "@sparticuz/chromium";
import puppeteer from "puppeteer-core";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PACKAGE = join(ROOT, "node_modules", "@sparticuz", "chromium");

/** The flags this machine's closed network needs: no background traffic, no QUIC. */
export const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Unpacks the package's Chromium (once per version) and returns its folder. */
async function unpacked() {
  const { version } = JSON.parse(readFileSync(join(PACKAGE, "package.json"), "utf8"));
  const tools = process.env.BOOKSTRACK_TOOLS_DIR || join(homedir(), ".cache", "bookstrack-jobs");
  const dir = join(tools, `chromium-${version}`);
  if (existsSync(join(dir, "chromium"))) return dir;
  mkdirSync(tools, { recursive: true });
  const staging = `${dir}.partial-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging);
  // The package unpacks into os.tmpdir(), which follows TMPDIR: point it at the staging
  // folder for the duration of the unpacking only.
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = staging;
  try {
    await chromium.executablePath(join(PACKAGE, "bin"));
    await inflate(join(PACKAGE, "bin", "al2023.tar.br"));
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
  try {
    renameSync(staging, dir);
  } catch (err) {
    // Another run finished first; use its copy.
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(join(dir, "chromium"))) throw err;
  }
  return dir;
}

/** The libraries the dynamic linker cannot find for `binary` (empty when all are there). */
function missingLibraries(binary, env) {
  try {
    const out = execFileSync("ldd", [binary], { encoding: "utf8", env });
    return out
      .split("\n")
      .filter((line) => line.includes("not found"))
      .map((line) => line.trim().split(" ")[0]);
  } catch {
    return []; // no ldd: let the launch itself tell
  }
}

/**
 * Launches headless Chromium with a fresh profile. Returns `{ browser, close, notes }`;
 * `close` also deletes the profile.
 */
export async function launch() {
  const dir = await unpacked();
  const binary = join(dir, "chromium");
  const env = { ...process.env };
  const notes = [`chromium ${binary}`];
  const missing = missingLibraries(binary, env);
  if (missing.length > 0) {
    const bundled = join(dir, "al2023", "lib");
    env.LD_LIBRARY_PATH = [bundled, env.LD_LIBRARY_PATH].filter(Boolean).join(":");
    notes.push(`system lacks ${missing.join(", ")}; using the package's copies in ${bundled}`);
    const still = missingLibraries(binary, env);
    if (still.length > 0) throw new Error(`Chromium needs ${still.join(", ")}, which neither the system nor the package provides`);
  }
  const profile = mkdtempSync(join(tmpdir(), "bookstrack-chromium-"));
  let browser;
  try {
    browser = await puppeteer.launch({
      executablePath: binary,
      headless: "shell",
      pipe: true,
      ignoreDefaultArgs: true,
      args: [...FLAGS, `--user-data-dir=${profile}`, "about:blank"],
      env,
      timeout: 30_000,
      protocolTimeout: 60_000,
    });
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
  const close = async () => {
    await browser.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { browser, close, notes };
}
