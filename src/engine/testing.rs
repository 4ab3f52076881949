//! An in-memory [`Host`] with a virtual clock, and [`Sim`], a tiny runtime that drives an engine.
//!
//! Time moves only when every task is waiting: then the clock jumps to the next timer (a
//! sleep, a provider's answer or deadline, the alarm). So a test of a 60 s provider hang runs
//! in microseconds and always the same way. Providers are scripted per request; storage can
//! be told to fail; the engine can be dropped mid-step and rebuilt from storage, as an
//! eviction would.

use super::Engine;
use crate::config::Config;
use crate::host::{
    Answer, Batch, CallError, Expect, Host, Outbound, SocketTag, StorageError, Stored, Values,
};
use crate::time::Millis;
use futures::future::LocalBoxFuture;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// How a scripted provider answers one request.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// This answer, this long after the request.
    After(Millis, Answer),
    /// No answer, ever: only the deadline ends the call.
    Hang,
    /// The connection fails at once.
    Fail(String),
}

pub type Script = Box<dyn FnMut(&Outbound) -> Scripted>;

/// A socket as the test sees it.
#[derive(Debug, Default)]
pub struct MemSocket {
    pub tag: RefCell<SocketTag>,
    /// When the runtime last answered this socket's ping by itself.
    pub auto_response_at: Cell<Option<Millis>>,
    pub sent: RefCell<Vec<String>>,
    pub closed: RefCell<Option<(u16, String)>>,
}

impl MemSocket {
    /// The `type` of every message received, in order.
    pub fn kinds(&self) -> Vec<String> {
        self.messages()
            .iter()
            .map(|m| m["type"].as_str().unwrap_or("").to_string())
            .collect()
    }

    pub fn messages(&self) -> Vec<Value> {
        self.sent
            .borrow()
            .iter()
            .map(|text| serde_json::from_str(text).unwrap_or(Value::Null))
            .collect()
    }

    pub fn close_code(&self) -> Option<u16> {
        self.closed.borrow().as_ref().map(|(code, _)| *code)
    }
}

#[derive(Default)]
struct Inner {
    now: Cell<Millis>,
    storage: RefCell<BTreeMap<String, Stored>>,
    alarm: Cell<Option<Millis>>,
    timers: RefCell<Vec<(Millis, Waker)>>,
    script: RefCell<Option<Script>>,
    calls: RefCell<Vec<(Millis, Outbound)>>,
    sockets: RefCell<Vec<Rc<MemSocket>>>,
    logs: RefCell<Vec<(String, Value)>>,
    /// The next this-many writes fail.
    failing_writes: Cell<u32>,
    aborts: Cell<u32>,
    resets: Cell<u32>,
    largest_write: Cell<usize>,
    random: Cell<u8>,
    /// Every key a `get` asked for, in order.
    keys_read: RefCell<Vec<String>>,
}

/// The in-memory host. Clones share one machine.
#[derive(Clone, Default)]
pub struct MemoryHost {
    inner: Rc<Inner>,
}

/// Completes when the clock reaches `at`.
struct Until {
    host: MemoryHost,
    at: Millis,
}

impl Future for Until {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.host.now() >= self.at {
            Poll::Ready(())
        } else {
            self.host
                .inner
                .timers
                .borrow_mut()
                .push((self.at, cx.waker().clone()));
            Poll::Pending
        }
    }
}

impl MemoryHost {
    pub fn at(now: Millis) -> Self {
        let host = Self::default();
        host.inner.now.set(now);
        host
    }

    pub fn script(&self, script: impl FnMut(&Outbound) -> Scripted + 'static) {
        *self.inner.script.borrow_mut() = Some(Box::new(script));
    }

    /// Moves the clock and wakes every timer that is now due.
    pub fn advance_to(&self, at: Millis) {
        if at > self.now() {
            self.inner.now.set(at);
        }
        let now = self.now();
        let due: Vec<Waker> = {
            let mut timers = self.inner.timers.borrow_mut();
            let (due, later): (Vec<_>, Vec<_>) = timers.drain(..).partition(|(t, _)| *t <= now);
            *timers = later;
            due.into_iter().map(|(_, w)| w).collect()
        };
        due.into_iter().for_each(Waker::wake);
    }

    fn next_timer(&self) -> Option<Millis> {
        self.inner.timers.borrow().iter().map(|(t, _)| *t).min()
    }

    pub fn alarm_at(&self) -> Option<Millis> {
        self.inner.alarm.get()
    }

    pub fn calls(&self) -> Vec<(Millis, Outbound)> {
        self.inner.calls.borrow().clone()
    }

    pub fn open_socket(&self, tag: SocketTag) -> Rc<MemSocket> {
        let socket = Rc::new(MemSocket {
            tag: RefCell::new(tag),
            ..MemSocket::default()
        });
        self.inner.sockets.borrow_mut().push(socket.clone());
        socket
    }

    pub fn storage(&self) -> BTreeMap<String, Stored> {
        self.inner.storage.borrow().clone()
    }

    pub fn set_storage(&self, values: BTreeMap<String, Stored>) {
        *self.inner.storage.borrow_mut() = values;
    }

    pub fn set_alarm_at(&self, at: Option<Millis>) {
        self.inner.alarm.set(at);
    }

    /// Makes the next `n` writes fail.
    pub fn fail_writes(&self, n: u32) {
        self.inner.failing_writes.set(n);
    }

    pub fn aborts(&self) -> u32 {
        self.inner.aborts.get()
    }

    /// Every key a `get` asked for so far, in order.
    pub fn keys_read(&self) -> Vec<String> {
        self.inner.keys_read.borrow().clone()
    }

    /// The largest key and value written by a put so far, in bytes.
    pub fn largest_write(&self) -> usize {
        self.inner.largest_write.get()
    }

    /// How often the engine asked for a reset when idle.
    pub fn resets(&self) -> u32 {
        self.inner.resets.get()
    }

    /// Events logged so far, by name.
    pub fn logged(&self, event: &str) -> Vec<Value> {
        self.inner
            .logs
            .borrow()
            .iter()
            .filter(|(e, _)| e == event)
            .map(|(_, fields)| fields.clone())
            .collect()
    }

    fn check_write(&self) -> Result<(), StorageError> {
        let failing = self.inner.failing_writes.get();
        if failing > 0 {
            self.inner.failing_writes.set(failing - 1);
            return Err(StorageError("injected write failure".into()));
        }
        Ok(())
    }
}

impl Host for MemoryHost {
    type Socket = Rc<MemSocket>;

    fn now(&self) -> Millis {
        self.inner.now.get()
    }

    fn name(&self) -> Option<String> {
        None
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<(), String> {
        for byte in buf {
            let next = self.inner.random.get().wrapping_add(37);
            self.inner.random.set(next);
            *byte = next;
        }
        Ok(())
    }

    fn log(&self, event: &str, fields: Value) {
        self.inner
            .logs
            .borrow_mut()
            .push((event.to_string(), fields));
    }

    async fn get(&self, keys: &[String]) -> Result<Values, StorageError> {
        self.inner.keys_read.borrow_mut().extend_from_slice(keys);
        let storage = self.inner.storage.borrow();
        Ok(Values(
            keys.iter()
                .filter_map(|k| storage.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
        ))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<(String, Stored)>, StorageError> {
        let storage = self.inner.storage.borrow();
        Ok(storage
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| start_after.is_none_or(|after| k.as_str() > after))
            .take(limit.unwrap_or(usize::MAX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn put(&self, batch: Batch) -> Result<(), StorageError> {
        self.check_write()?;
        // workerd's own limits: a test that breaks one fails here as production would.
        if batch.len() > crate::host::MAX_KEYS_PER_WRITE {
            return Err(StorageError(format!("a put of {} keys", batch.len())));
        }
        if batch.largest_entry_bytes() > crate::host::MAX_ENTRY_BYTES {
            let bytes = batch.largest_entry_bytes();
            return Err(StorageError(format!("a value of {bytes} bytes")));
        }
        let largest = self
            .inner
            .largest_write
            .get()
            .max(batch.largest_entry_bytes());
        self.inner.largest_write.set(largest);
        let mut storage = self.inner.storage.borrow_mut();
        for (key, value) in batch.into_entries() {
            storage.insert(key, value);
        }
        Ok(())
    }

    async fn put_if(&self, key: &str, expect: Expect, value: Stored) -> Result<bool, StorageError> {
        self.check_write()?;
        let mut storage = self.inner.storage.borrow_mut();
        if !expect(storage.get(key)) {
            return Ok(false);
        }
        storage.insert(key.to_string(), value);
        Ok(true)
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StorageError> {
        self.check_write()?;
        let mut storage = self.inner.storage.borrow_mut();
        keys.iter().for_each(|k| {
            storage.remove(k);
        });
        Ok(())
    }

    async fn delete_all(&self) -> Result<(), StorageError> {
        self.check_write()?;
        self.inner.storage.borrow_mut().clear();
        Ok(())
    }

    async fn set_alarm(&self, at: Option<Millis>) -> Result<(), StorageError> {
        self.inner.alarm.set(at);
        Ok(())
    }

    async fn fetch(&self, request: Outbound, timeout_ms: Millis) -> Result<Answer, CallError> {
        let started = self.now();
        let scripted = match self.inner.script.borrow_mut().as_mut() {
            Some(script) => script(&request),
            None => Scripted::Fail("no provider is scripted".into()),
        };
        self.inner.calls.borrow_mut().push((started, request));
        let deadline = started + timeout_ms;
        let (ready_at, answer) = match scripted {
            Scripted::Fail(why) => return Err(CallError::Failed(why)),
            Scripted::After(delay, answer) => (started + delay, Some(answer)),
            Scripted::Hang => (Millis::MAX, None),
        };
        if ready_at <= deadline {
            Until {
                host: self.clone(),
                at: ready_at,
            }
            .await;
            answer.ok_or_else(|| CallError::Failed("hung".into()))
        } else {
            Until {
                host: self.clone(),
                at: deadline,
            }
            .await;
            Err(CallError::TimedOut {
                after_ms: timeout_ms,
            })
        }
    }

    async fn sleep_until(&self, at: Millis) {
        Until {
            host: self.clone(),
            at,
        }
        .await
    }

    fn sockets(&self) -> Vec<Rc<MemSocket>> {
        self.inner
            .sockets
            .borrow()
            .iter()
            .filter(|s| s.closed.borrow().is_none())
            .cloned()
            .collect()
    }

    fn send(&self, socket: &Rc<MemSocket>, text: &str) {
        if socket.closed.borrow().is_none() {
            socket.sent.borrow_mut().push(text.to_string());
        }
    }

    fn close(&self, socket: &Rc<MemSocket>, code: u16, reason: &str) {
        let mut closed = socket.closed.borrow_mut();
        if closed.is_none() {
            *closed = Some((code, reason.to_string()));
        }
    }

    fn tag(&self, socket: &Rc<MemSocket>) -> SocketTag {
        socket.tag.borrow().clone()
    }

    fn set_tag(&self, socket: &Rc<MemSocket>, tag: &SocketTag) {
        *socket.tag.borrow_mut() = tag.clone();
    }

    fn auto_response_at(&self, socket: &Rc<MemSocket>) -> Option<Millis> {
        socket.auto_response_at.get()
    }

    fn reset_when_idle(&self) {
        self.inner.resets.set(self.inner.resets.get() + 1);
    }

    fn abort(&self, _reason: &str) {
        self.inner.aborts.set(self.inner.aborts.get() + 1);
    }
}

/// A task's "poll me again" flag.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Task {
    future: LocalBoxFuture<'static, ()>,
    flag: Arc<Flag>,
}

/// A single-threaded runtime with a virtual clock: request tasks, and the object's one alarm,
/// fired when it is due and never while it runs, as workerd does. A failed alarm is retried a
/// second later.
pub struct Sim {
    pub host: MemoryHost,
    pub engine: Rc<Engine<MemoryHost>>,
    config: Config,
    tasks: Vec<Task>,
    alarm_running: Rc<Cell<bool>>,
    /// Resets asked for with `Host::abort` so far; each one evicts the engine, as workerd does.
    aborts_seen: u32,
}

impl Sim {
    /// A new object for a job, at `now`.
    pub fn new(config: Config, now: Millis) -> Self {
        let host = MemoryHost::at(now);
        let engine = Rc::new(Engine::new(host.clone(), config.clone()));
        Self {
            host,
            engine,
            config,
            tasks: Vec::new(),
            alarm_running: Rc::new(Cell::new(false)),
            aborts_seen: 0,
        }
    }

    pub fn now(&self) -> Millis {
        self.host.now()
    }

    pub fn spawn(&mut self, future: impl Future<Output = ()> + 'static) {
        self.tasks.push(Task {
            future: Box::pin(future),
            flag: Arc::new(Flag(AtomicBool::new(true))),
        });
    }

    /// Runs `make(engine)` as a request to the object and returns its answer; time moves
    /// only if the request itself waits.
    pub fn request<T: 'static, F: Future<Output = T> + 'static>(
        &mut self,
        make: impl FnOnce(Rc<Engine<MemoryHost>>) -> F,
    ) -> T {
        let out = Rc::new(RefCell::new(None));
        let slot = out.clone();
        let future = make(self.engine.clone());
        self.spawn(async move {
            *slot.borrow_mut() = Some(future.await);
        });
        self.run(|| out.borrow().is_some(), Millis::MAX);
        let answer = out.borrow_mut().take();
        answer.expect("the request finished")
    }

    /// Every page of a complete job's results from the pipeline named by `segment`, followed
    /// through `nextCursor` and joined into one document (books appended; the rest from the
    /// first page). Pages of `limit` entries, or the default when `None`.
    pub fn all_results(
        &mut self,
        token: &str,
        segment: &'static str,
        limit: Option<usize>,
    ) -> Value {
        let mut whole: Option<Value> = None;
        let mut cursor: Option<String> = None;
        for _ in 0..100_000 {
            let query = crate::results::PageQuery {
                limit: limit.map(|n| n.to_string()),
                cursor: cursor.take(),
            };
            let token = token.to_string();
            let (status, mut page) = self
                .request(|e| async move { e.results(Some(&token), segment, &query).await })
                .expect("results are served");
            assert_eq!(status, 200, "{page}");
            cursor = page
                .as_object_mut()
                .and_then(|p| p.remove("nextCursor"))
                .and_then(|c| c.as_str().map(str::to_string));
            match &mut whole {
                None => whole = Some(page),
                Some(whole) => {
                    let more = page["books"].as_array().cloned().unwrap_or_default();
                    assert!(!more.is_empty(), "a page after the first is empty: {page}");
                    whole["books"].as_array_mut().unwrap().extend(more);
                }
            }
            if cursor.is_none() {
                return whole.unwrap();
            }
        }
        panic!("results never ended");
    }

    /// Drops the engine with whatever it was doing (an eviction), and builds a new one from
    /// storage. The alarm stays armed, as the runtime keeps it.
    pub fn evict(&mut self) {
        self.tasks.clear();
        self.alarm_running.set(false);
        self.engine = Rc::new(Engine::new(self.host.clone(), self.config.clone()));
        self.load();
    }

    pub fn load(&mut self) {
        let loaded = self.request(|engine| async move { engine.load().await });
        loaded.expect("the job loads from storage");
    }

    /// Runs until `done()` or the clock would pass `limit`; returns whether `done()` holds.
    pub fn run(&mut self, mut done: impl FnMut() -> bool, limit: Millis) -> bool {
        loop {
            self.poll_woken();
            if self.host.aborts() > self.aborts_seen {
                self.aborts_seen = self.host.aborts();
                self.evict();
            }
            if done() {
                return true;
            }
            if self.tasks.iter().any(|t| t.flag.0.load(Ordering::SeqCst)) {
                continue;
            }
            if self.fire_alarm_if_due() {
                continue;
            }
            let alarm = (!self.alarm_running.get())
                .then(|| self.host.alarm_at())
                .flatten();
            let next = [self.host.next_timer(), alarm].into_iter().flatten().min();
            match next {
                Some(at) if at <= limit => self.host.advance_to(at),
                _ => {
                    if limit != Millis::MAX {
                        self.host.advance_to(limit);
                        self.poll_woken();
                    }
                    return done();
                }
            }
        }
    }

    /// Runs everything due up to `at`, leaving the clock there.
    pub fn run_until(&mut self, at: Millis) {
        self.run(|| false, at);
    }

    fn poll_woken(&mut self) {
        let mut i = 0;
        while i < self.tasks.len() {
            if self.tasks[i].flag.0.swap(false, Ordering::SeqCst) {
                let waker = Waker::from(self.tasks[i].flag.clone());
                let mut cx = Context::from_waker(&waker);
                if self.tasks[i].future.as_mut().poll(&mut cx).is_ready() {
                    self.tasks.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
    }

    fn fire_alarm_if_due(&mut self) -> bool {
        let due = self.host.alarm_at().is_some_and(|at| at <= self.host.now());
        if !due || self.alarm_running.get() {
            return false;
        }
        self.host.set_alarm_at(None);
        self.alarm_running.set(true);
        let (engine, host, running) = (
            self.engine.clone(),
            self.host.clone(),
            self.alarm_running.clone(),
        );
        self.spawn(async move {
            if engine.alarm().await.is_err() && host.alarm_at().is_none() {
                // The platform retries a failed alarm.
                host.set_alarm_at(Some(host.now() + 1_000));
            }
            running.set(false);
        });
        true
    }
}
