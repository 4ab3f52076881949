//! Starts and stops the real worker under `wrangler dev` (workerd) on a free loopback port.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// Where the harness keeps worker state directories and logs.
fn scratch_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("e2e")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Node and wrangler that `scripts/setup` chose.
struct Tools {
    node: String,
    wrangler_js: String,
}

/// Sets up and builds the worker once per test process.
fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        for script in ["scripts/setup", "scripts/build"] {
            let status = Command::new("bash")
                .arg(script)
                .current_dir(repo_root())
                .status()
                .unwrap_or_else(|e| panic!("running {script}: {e}"));
            assert!(status.success(), "{script} failed");
        }
        let env = std::fs::read_to_string(repo_root().join(".tools/env")).expect(".tools/env");
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_else(|| panic!("{name} missing from .tools/env"))
        };
        Tools {
            node: var("NODE_BIN"),
            wrangler_js: var("WRANGLER_JS"),
        }
    })
}

/// The Node that `scripts/setup` chose (new enough for wrangler), for tests that run Node
/// scripts such as the browser test.
pub fn node_bin() -> &'static str {
    &tools().node
}

/// Process groups started by this test process; killed at exit whatever happened.
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

extern "C" fn kill_live_groups() {
    if let Ok(groups) = LIVE_GROUPS.lock() {
        for pgid in groups.iter() {
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

fn register(pgid: i32) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| unsafe {
        libc::atexit(kill_live_groups);
    });
    LIVE_GROUPS.lock().unwrap().push(pgid);
}

fn unregister(pgid: i32) {
    LIVE_GROUPS.lock().unwrap().retain(|g| *g != pgid);
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How to start a worker.
#[derive(Clone, Default)]
pub struct WorkerOptions {
    /// `--var NAME:VALUE` overrides (contract section 7).
    pub vars: Vec<(String, String)>,
    /// Reuse a state directory (restart tests); a fresh one when `None`.
    pub persist_to: Option<PathBuf>,
    /// The `/health` status that means the worker is up: 200 unless set (a worker in
    /// production mode without its signing key answers 503).
    pub health_status: Option<u16>,
    /// Another wrangler configuration than the repository's, with the registry directory
    /// through which `wrangler dev` sessions reach each other's Durable Objects.
    pub config: Option<(PathBuf, PathBuf)>,
}

impl WorkerOptions {
    pub fn var(mut self, name: &str, value: impl ToString) -> Self {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    /// Drops a `--var`, so the worker sees the wrangler.toml value or the default.
    pub fn without_var(mut self, name: &str) -> Self {
        self.vars.retain(|(n, _)| n != name);
        self
    }

    /// Runs with the configuration at `config`, sessions meeting in `registry`.
    pub fn config(mut self, config: PathBuf, registry: PathBuf) -> Self {
        self.config = Some((config, registry));
        self
    }

    /// Waits for `/health` to answer `status` instead of 200.
    pub fn health_status(mut self, status: u16) -> Self {
        self.health_status = Some(status);
        self
    }
}

/// Two `wrangler dev` sessions, each in its own workerd process, as on Cloudflare where the
/// Worker and a job's object run in different isolates (often on different machines): the
/// `objects` one defines the job object; the `entry` one, which clients talk to, reaches it
/// through the local dev registry. What the object costs can then be measured on its own.
pub struct SplitWorkers {
    pub entry: Worker,
    pub objects: Worker,
}

impl SplitWorkers {
    pub async fn start(options: WorkerOptions) -> SplitWorkers {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = scratch_root().join(format!("split{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let registry = dir.join("registry");
        let repo = std::fs::read_to_string(repo_root().join("wrangler.toml")).unwrap();
        let main = repo_root().join("build/worker/shim.mjs");
        // Unique names, so that other tests' sessions in the default registry never answer.
        let objects_name = format!("bookstrack-jobs-objects-{}-{n}", std::process::id());
        // Without the build section: the worker is built already, and wrangler would run it
        // from the scratch directory.
        let build = repo.find("[build]").expect("a [build] section");
        let after = build
            + repo[build + 1..]
                .find("\n[")
                .expect("a section after [build]")
            + 2;
        let repo = format!("{}{}", &repo[..build], &repo[after..]);
        let objects = repo.replace(
            "main = \"build/worker/shim.mjs\"",
            &format!("main = \"{}\"", main.display()),
        );
        assert!(
            objects.contains(&main.display().to_string()),
            "wrangler.toml changed shape"
        );
        let entry = objects
            .replace(
                "{ name = \"JOBS\", class_name = \"JobObject\" }",
                &format!(
                    "{{ name = \"JOBS\", class_name = \"JobObject\", script_name = \"{objects_name}\" }}"
                ),
            )
            .replace("new_sqlite_classes = [\"JobObject\"]", "new_sqlite_classes = []");
        assert!(entry.contains(&objects_name), "wrangler.toml changed shape");
        let objects = objects.replace(
            "name = \"bookstrack-jobs\"",
            &format!("name = \"{objects_name}\""),
        );
        let entry = entry.replace(
            "name = \"bookstrack-jobs\"",
            &format!("name = \"{objects_name}-entry\""),
        );
        std::fs::write(dir.join("objects.toml"), objects).unwrap();
        std::fs::write(dir.join("entry.toml"), entry).unwrap();
        let objects = Worker::start(
            options
                .clone()
                .config(dir.join("objects.toml"), registry.clone()),
        )
        .await;
        let entry = Worker::start(options.config(dir.join("entry.toml"), registry)).await;
        SplitWorkers { entry, objects }
    }
}

/// A running `wrangler dev`, stopped (its whole process group) when dropped.
pub struct Worker {
    pub base: String,
    pub port: u16,
    pub state_dir: PathBuf,
    pub log_path: PathBuf,
    options: WorkerOptions,
    pgid: Option<i32>,
    starts: u32,
    /// Where the current launch's output starts in the log.
    launch_log_offset: usize,
}

impl Worker {
    pub async fn start(options: WorkerOptions) -> Worker {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = scratch_root().join(format!("w{}-{n}", std::process::id()));
        let state_dir = options
            .persist_to
            .clone()
            .unwrap_or_else(|| dir.join("state"));
        std::fs::create_dir_all(&state_dir).unwrap();
        let mut worker = Worker {
            base: String::new(),
            port: 0,
            log_path: dir.join("wrangler.log"),
            state_dir,
            options,
            pgid: None,
            starts: 0,
            launch_log_offset: 0,
        };
        worker.launch().await;
        worker
    }

    async fn launch(&mut self) {
        let tools = tools();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            // Ports can be taken between choosing and binding; a failed start tries anew.
            self.port = free_port();
            self.base = format!("http://127.0.0.1:{}", self.port);
            self.starts += 1;
            std::fs::create_dir_all(self.log_path.parent().unwrap()).unwrap();
            self.launch_log_offset = self.log().len();
            let log = File::options()
                .create(true)
                .append(true)
                .open(&self.log_path)
                .unwrap();
            let mut cmd = Command::new(&tools.node);
            cmd.arg(&tools.wrangler_js)
                .args(["dev", "--ip", "127.0.0.1", "--port", &self.port.to_string()])
                .args(["--inspector-port", &free_port().to_string()])
                .arg("--persist-to")
                .arg(&self.state_dir)
                .arg("--show-interactive-dev-session=false");
            for (name, value) in &self.options.vars {
                cmd.args(["--var", &format!("{name}:{value}")]);
            }
            if let Some((config, registry)) = &self.options.config {
                cmd.arg("--config").arg(config);
                cmd.env("WRANGLER_REGISTRY_PATH", registry);
            }
            cmd.current_dir(repo_root())
                // Node keeps wrangler's compiled code between runs: a third of a second of
                // CPU less for each of the suite's worker starts.
                .env(
                    "NODE_COMPILE_CACHE",
                    scratch_root().join("node-compile-cache"),
                )
                .env("WRANGLER_SEND_METRICS", "false")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .process_group(0);
            let child = cmd.spawn().expect("spawning wrangler dev");
            let pgid = child.id() as i32;
            register(pgid);
            self.pgid = Some(pgid);
            // Dropping a `Child` neither kills nor waits; the group is stopped and the leader
            // reaped by pid in `stop_group`.
            drop(child);
            match self.wait_healthy(Duration::from_secs(60)).await {
                Ok(()) => return,
                Err(why) => {
                    self.stop_group(libc::SIGKILL);
                    assert!(
                        Instant::now() < deadline,
                        "worker did not start: {why}\n{}",
                        self.log_tail(60)
                    );
                }
            }
        }
    }

    async fn wait_healthy(&self, limit: Duration) -> Result<(), String> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        let mut delay = Duration::from_millis(50);
        // Another worker may hold the port (taken between choosing and binding, e.g. by a
        // runtime's own listener), and its /health would answer for ours: only once our
        // wrangler says it listens there is the port ours.
        let listening = format!("Ready on {}", self.base);
        loop {
            let want = self.options.health_status.unwrap_or(200);
            let ours = self
                .log()
                .get(self.launch_log_offset..)
                .is_some_and(|log| log.contains(&listening));
            if !ours {
                // Not listening yet, or never will be (then it exits, found below).
                delay = Duration::from_millis(25);
            } else if let Ok(resp) = client.get(format!("{}/health", self.base)).send().await {
                // The envelope's timestamp tells the worker's answer from wrangler's own.
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                if status == want && body.contains("\"metadata\"") {
                    super::schema::check_answer("/health", status, Some("application/json"), &body);
                    return Ok(());
                }
            }
            if let Some(pgid) = self.pgid {
                // Signal 0 only probes: the group leader died if it fails.
                if unsafe { libc::kill(pgid, 0) } != 0 {
                    return Err("wrangler exited".into());
                }
            }
            if Instant::now() > deadline {
                return Err("timed out waiting for /health".into());
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    fn stop_group(&mut self, signal: i32) {
        if let Some(pgid) = self.pgid.take() {
            unsafe { libc::kill(-pgid, signal) };
            // Reap the leader so it does not linger as a zombie.
            let mut status = 0;
            let deadline = Instant::now() + Duration::from_secs(10);
            while unsafe { libc::waitpid(pgid, &mut status, libc::WNOHANG) } == 0
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            if signal != libc::SIGKILL {
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            unregister(pgid);
        }
    }

    /// Kills the whole process group abruptly, as a crash or an eviction would.
    pub fn kill(&mut self) {
        self.stop_group(libc::SIGKILL);
    }

    /// Kills the worker and starts it again on the same state directory (and a new port).
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// Kills the runtime process that runs the worker and holds its objects (SIGKILL, as a
    /// crash of the machine would) and waits until wrangler has started a new one on the same
    /// state, behind the same port. Every socket drops and every object is constructed anew
    /// from storage, as after [`Worker::restart`], without the seconds of CPU that starting
    /// wrangler itself costs.
    pub async fn crash(&mut self) {
        let old = self
            .workerd_pid()
            .expect("no workerd process for this worker");
        unsafe { libc::kill(old, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // The old runtime lingers a moment as a zombie without a command line, which
            // `workerd_pid` does not count; a live runtime with another pid is the new one.
            if matches!(self.workerd_pid(), Some(pid) if pid != old) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "wrangler did not restart its runtime\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Err(why) = self.wait_healthy(Duration::from_secs(60)).await {
            panic!(
                "the worker did not come back after a crash: {why}\n{}",
                self.log_tail(60)
            );
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Structured log lines (one JSON object each) that the worker printed.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            // Error-level lines come wrapped in colour codes: from the first `{"` to the last `}`.
            .filter_map(|l| Some(&l[l.find("{\"")?..=l.rfind('}')?]))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("event").is_some())
            .collect()
    }

    /// Waits until the worker has logged an event matching `pred` and returns it. Log lines
    /// reach the file through wrangler a little after the client sees the effect, so tests
    /// that read logs wait for the line they need rather than reading once.
    pub async fn wait_event(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = self.events().into_iter().find(|e| pred(e)) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "worker never logged {what}\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a job's final log line (`job.completed`, `job.failed` or `job.canceled`); every
    /// line the job logged before it is in the file by then.
    pub async fn job_logged_end(&self, job_id: &str) -> serde_json::Value {
        self.wait_event("the job's end", |e| {
            e["jobId"] == job_id
                && matches!(
                    e["event"].as_str(),
                    Some("job.completed" | "job.failed" | "job.canceled")
                )
        })
        .await
    }

    /// The pid of the `workerd` process that runs this worker's code. wrangler starts two in
    /// its process group: a proxy that takes the requests on our port, and the runtime of the
    /// worker itself, the one started with an inspector.
    pub fn workerd_pid(&self) -> Option<i32> {
        let pgid = self.pgid?;
        let runtimes: Vec<i32> = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|entry| {
                let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                // `pid (comm) state ppid pgrp ...`: the name may hold spaces, so split after `)`.
                let (head, rest) = stat.rsplit_once(')')?;
                let comm = head.split_once('(')?.1;
                let pgrp: i32 = rest.split_whitespace().nth(2)?.parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                let with_inspector = String::from_utf8_lossy(&cmdline).contains("--inspector-addr");
                (comm == "workerd" && pgrp == pgid && with_inspector).then_some(pid)
            })
            .collect();
        assert!(
            runtimes.len() <= 1,
            "several workerd runtimes: {runtimes:?}"
        );
        runtimes.first().copied()
    }

    /// The `workerd` process's memory, from `/proc/<pid>/status`, in KiB: (resident now,
    /// the peak since start or since the last [`Worker::reset_memory_peak`]).
    pub fn workerd_memory_kib(&self) -> (u64, u64) {
        let pid = self
            .workerd_pid()
            .expect("no workerd process for this worker");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Resets the `workerd` process's peak resident size to its current one (Linux's
    /// `clear_refs` 5), so that the next peak read is what happened since.
    pub fn reset_memory_peak(&self) {
        let pid = self
            .workerd_pid()
            .expect("no workerd process for this worker");
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    }

    pub fn ws_base(&self) -> String {
        self.base.replacen("http://", "ws://", 1)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop_group(libc::SIGTERM);
    }
}
