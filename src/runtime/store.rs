//! Durable Object storage glue: the domain's [`Batch`] and [`Values`] to and from the JS API.

use crate::host::{Batch, StorageError, Stored, Values};
use crate::time::Millis;
use std::collections::BTreeMap;
use worker::js_sys::{self, Object, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{ListOptions, ScheduledTime, Storage};

use crate::host::MAX_KEYS_PER_WRITE as KEYS_PER_CALL;

pub fn storage_error(e: worker::Error) -> StorageError {
    StorageError(e.to_string())
}

fn to_js(value: &Stored) -> JsValue {
    match value {
        Stored::Text(text) => JsValue::from_str(text),
        Stored::Bytes(bytes) => Uint8Array::from(bytes.as_slice()).into(),
    }
}

/// A stored value read back: strings are text, byte arrays are bytes; anything else (which
/// this project never writes) is skipped.
fn from_js(value: JsValue) -> Option<Stored> {
    if let Some(text) = value.as_string() {
        return Some(Stored::Text(text));
    }
    value
        .dyn_into::<Uint8Array>()
        .ok()
        .map(|array| Stored::Bytes(array.to_vec()))
}

fn values(map: js_sys::Map) -> Values {
    let mut out = BTreeMap::new();
    map.for_each(&mut |value, key| {
        if let (Some(key), Some(value)) = (key.as_string(), from_js(value)) {
            out.insert(key, value);
        }
    });
    Values(out)
}

pub async fn get(storage: &Storage, keys: &[String]) -> Result<Values, StorageError> {
    let map = storage
        .get_multiple(keys.to_vec())
        .await
        .map_err(storage_error)?;
    Ok(values(map))
}

/// Keys under `prefix` in order, after `start_after` (the smallest key greater than it is
/// itself followed by a NUL), at most `limit` of them.
pub async fn list(
    storage: &Storage,
    prefix: &str,
    start_after: Option<&str>,
    limit: Option<usize>,
) -> Result<Vec<(String, Stored)>, StorageError> {
    let start = start_after.map(|key| format!("{key}\0"));
    let mut options = ListOptions::new().prefix(prefix);
    if let Some(start) = &start {
        options = options.start(start);
    }
    if let Some(limit) = limit {
        options = options.limit(limit);
    }
    let map = storage
        .list_with_options(options)
        .await
        .map_err(storage_error)?;
    Ok(values(map).0.into_iter().collect())
}

/// Writes a batch in one `put`, which the runtime makes one transaction.
pub async fn put(storage: &Storage, batch: Batch) -> Result<(), StorageError> {
    if batch.len() > KEYS_PER_CALL {
        return Err(StorageError(format!(
            "a batch of {} keys is over the {KEYS_PER_CALL} a put takes",
            batch.len()
        )));
    }
    let object = Object::new();
    for (key, value) in batch.entries() {
        Reflect::set(&object, &JsValue::from_str(key), &to_js(value))
            .map_err(|_| StorageError(format!("cannot stage {key}")))?;
    }
    storage
        .put_multiple_raw(object)
        .await
        .map_err(storage_error)
}

pub async fn delete(storage: &Storage, keys: &[String]) -> Result<(), StorageError> {
    for chunk in keys.chunks(KEYS_PER_CALL) {
        storage
            .delete_multiple(chunk.to_vec())
            .await
            .map_err(storage_error)?;
    }
    Ok(())
}

/// Arms the alarm at an absolute time (`set_alarm(i64)` would take an offset from now), or
/// removes it.
pub async fn set_alarm(storage: &Storage, at: Option<Millis>) -> Result<(), StorageError> {
    match at {
        Some(at) => {
            let date = js_sys::Date::new(&JsValue::from_f64(at as f64));
            storage.set_alarm(ScheduledTime::new(date)).await
        }
        None => storage.delete_alarm().await,
    }
    .map_err(storage_error)
}
