//! Request bodies read in large chunks: a BYOB reader's `readAtLeast` fills a buffer per call.
//!
//! A body read through the default reader arrives in the runtime's own chunks, about 4 KiB
//! each: a 10 MiB upload is some 2,500 reads, each a promise, a trip into wasm and a copy,
//! once in the Worker and once more in the job's object. `readAtLeast` (a Workers extension to
//! the BYOB reader) resolves only when the buffer holds `min` bytes or the body has ended, so
//! the same upload is a handful of reads. Bodies that offer no BYOB reader are read as before.

use futures::stream::{self, LocalBoxStream, StreamExt};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::js_sys::{Object, Reflect, Uint8Array};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{ByteStream, Request};

#[wasm_bindgen]
extern "C" {
    /// The body, as far as this module needs it.
    type Body;
    #[wasm_bindgen(method, catch, js_name = getReader)]
    fn get_reader(this: &Body, options: &Object) -> Result<ByobReader, JsValue>;

    type ByobReader;
    #[wasm_bindgen(method, js_name = readAtLeast)]
    fn read_at_least(this: &ByobReader, min: u32, view: &Uint8Array) -> worker::js_sys::Promise;
}

/// One chunk, or the runtime's error as text.
type Chunk = Result<Vec<u8>, String>;
/// A read in progress: the reader and the buffer its next read fills.
type Reading = (ByobReader, Uint8Array);

/// The largest chunk asked for: the size of a stored input slice, so the object never holds
/// more than one extra slice of a creation body.
pub const MAX_CHUNK_BYTES: usize = crate::keys::SLICE_BYTES;

/// The body's chunks, each at most `chunk` bytes (clamped to 1 byte ..= [`MAX_CHUNK_BYTES`])
/// and as large as that except the last; `None` when the request has no body. Errors are the
/// runtime's, as text.
pub fn chunks(req: &mut Request, chunk: usize) -> Option<LocalBoxStream<'static, Chunk>> {
    let body = req.inner().body()?;
    let chunk = chunk.clamp(1, MAX_CHUNK_BYTES) as u32;
    let options = Object::new();
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(&options, &"mode".into(), &"byob".into());
    let reader = match body.unchecked_ref::<Body>().get_reader(&options) {
        Ok(reader) => reader,
        Err(_) => {
            // Not a byte stream: the default reader, in whatever chunks the runtime gives.
            let fallback = req.stream().ok()?;
            return Some(default_chunks(fallback));
        }
    };
    let state = Some((reader, Uint8Array::new_with_length(chunk)));
    Some(
        stream::unfold(state, move |mut state| async move {
            loop {
                let (reader, buffer) = state.take()?;
                let result = match JsFuture::from(reader.read_at_least(chunk, &buffer)).await {
                    Ok(result) => result,
                    Err(e) => return ended_by(worker::Error::from(e)),
                };
                let done = Reflect::get(&result, &"done".into())
                    .ok()
                    .and_then(|d| d.as_bool())
                    .unwrap_or(true);
                let view = Reflect::get(&result, &"value".into())
                    .ok()
                    .and_then(|v| v.dyn_into::<Uint8Array>().ok())?;
                // The read transferred the buffer into `view`; the next read fills it again.
                state = (!done).then(|| (reader, Uint8Array::new(&view.buffer())));
                if view.length() > 0 {
                    return Some((Ok(view.to_vec()), state));
                }
            }
        })
        .boxed_local(),
    )
}

/// How a failed read ends the stream: as [`ByteStream`] does, an abort is the body's end and
/// anything else an error.
fn ended_by(error: worker::Error) -> Option<(Chunk, Option<Reading>)> {
    let text = error.to_string();
    (text != "Error: aborted").then_some((Err(text), None))
}

fn default_chunks(stream: ByteStream) -> LocalBoxStream<'static, Chunk> {
    stream
        .map(|chunk| chunk.map_err(|e| e.to_string()))
        .boxed_local()
}
