//! Durable Object storage glue: typed reads and batched writes, counted for the benchmarks.

use crate::time::Millis;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::Cell;
use worker::js_sys::{self, Object, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{ListOptions, ScheduledTime, Storage};

/// Storage operations made by this object instance since it was constructed.
#[derive(Debug, Default)]
pub struct IoCounters {
    pub reads: Cell<u64>,
    pub writes: Cell<u64>,
    pub alarm_sets: Cell<u64>,
}

impl IoCounters {
    fn bump(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }

    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "storageReads": self.reads.get(),
            "storageWrites": self.writes.get(),
            "alarmSets": self.alarm_sets.get(),
        })
    }
}

/// A batch of values to write in one `put` (one implicit transaction).
#[derive(Default)]
pub struct WriteBatch {
    object: Option<Object>,
    len: usize,
}

impl WriteBatch {
    fn object(&mut self) -> &Object {
        self.object.get_or_insert_with(Object::new)
    }

    /// Adds a JSON-encoded value. Serialising our own types cannot fail; if it ever did the
    /// key is skipped rather than written half-formed.
    pub fn json<T: Serialize>(&mut self, key: &str, value: &T) -> &mut Self {
        if let Ok(text) = serde_json::to_string(value) {
            self.text(key, text);
        }
        self
    }

    pub fn text(&mut self, key: &str, text: String) -> &mut Self {
        let _ = Reflect::set(self.object(), &JsValue::from_str(key), &JsValue::from(text));
        self.len += 1;
        self
    }

    pub fn bytes(&mut self, key: &str, bytes: &[u8]) -> &mut Self {
        let array = Uint8Array::from(bytes);
        let _ = Reflect::set(self.object(), &JsValue::from_str(key), &array.into());
        self.len += 1;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Values read in one batch, by key.
pub struct ReadBatch {
    map: js_sys::Map,
}

impl ReadBatch {
    fn value(&self, key: &str) -> Option<JsValue> {
        let v = self.map.get(&JsValue::from_str(key));
        (!v.is_undefined()).then_some(v)
    }

    pub fn json<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T, String>> {
        self.value(key).map(|v| {
            let text = v.as_string().ok_or_else(|| format!("{key} is not text"))?;
            serde_json::from_str(&text).map_err(|e| format!("{key}: {e}"))
        })
    }

    pub fn text(&self, key: &str) -> Option<String> {
        self.value(key).and_then(|v| v.as_string())
    }

    pub fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.value(key)
            .and_then(|v| v.dyn_into::<Uint8Array>().ok())
            .map(|a| a.to_vec())
    }

    /// Every key in the batch, in storage (lexicographic) order.
    pub fn keys(&self) -> Vec<String> {
        self.map
            .keys()
            .into_iter()
            .filter_map(|k| k.ok()?.as_string())
            .collect()
    }
}

pub async fn read(storage: &Storage, io: &IoCounters, keys: &[&str]) -> worker::Result<ReadBatch> {
    IoCounters::bump(&io.reads);
    let map = storage.get_multiple(keys.to_vec()).await?;
    Ok(ReadBatch { map })
}

pub async fn read_prefix(
    storage: &Storage,
    io: &IoCounters,
    prefix: &str,
) -> worker::Result<ReadBatch> {
    IoCounters::bump(&io.reads);
    let map = storage
        .list_with_options(ListOptions::new().prefix(prefix))
        .await?;
    Ok(ReadBatch { map })
}

pub async fn write(storage: &Storage, io: &IoCounters, batch: WriteBatch) -> worker::Result<()> {
    let Some(object) = batch.object else {
        return Ok(());
    };
    IoCounters::bump(&io.writes);
    storage.put_multiple_raw(object).await
}

pub async fn delete(storage: &Storage, io: &IoCounters, keys: Vec<String>) -> worker::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    IoCounters::bump(&io.writes);
    // The runtime deletes at most 128 keys per call.
    for chunk in keys.chunks(128) {
        storage.delete_multiple(chunk.to_vec()).await?;
    }
    Ok(())
}

pub async fn set_alarm(storage: &Storage, io: &IoCounters, at: Millis) -> worker::Result<()> {
    IoCounters::bump(&io.alarm_sets);
    // An absolute time: `set_alarm(i64)` would take an offset from now.
    let date = js_sys::Date::new(&JsValue::from_f64(at as f64));
    storage.set_alarm(ScheduledTime::new(date)).await
}
