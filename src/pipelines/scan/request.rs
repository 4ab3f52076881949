//! Validation of shelf-scan requests: the batch JSON body and the single-image body.
//!
//! # Error details
//!
//! Every 400 about one field carries `details.field`, a path into the body (`"jobId"`,
//! `"images"`, `"images[2].index"`), and, when the field belongs to one entry of `images`,
//! `details.position`: that entry's 0-based position in the array (not its `index` value).
//! A duplicate index adds `index` (the repeated value) and `firstPosition`. A count error adds
//! `count` and `max`. The 413 of an oversized image keeps `too_large`'s `limitBytes` and adds
//! `field` and `position`; a 415 for unknown image bytes carries `field` and `position` too.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use crate::json_body::structural_brackets;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::json;

use super::image::{detect, kind_from_media_type, ImageKind};
use crate::base64::{self, DecodeError};
use crate::error::ApiError;
use crate::ids::parse_job_id;
use crate::multipart;

pub const MAX_IMAGES: usize = 5;
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
pub const MAX_BATCH_BODY_BYTES: usize = 36 * 1024 * 1024;
/// A single-image multipart body may exceed the image limit by its framing; 64 KiB is far
/// more than a form's headers and small fields need.
pub const MAX_SINGLE_BODY_BYTES: usize = MAX_IMAGE_BYTES + 64 * 1024;
/// A valid batch nests three levels; anything much deeper is an attack on the parser.
pub const MAX_JSON_DEPTH: usize = 32;

/// One validated image: its bytes are a JPEG, PNG, WebP or HEIC file of at most
/// `MAX_IMAGE_BYTES`, and `kind` comes from those bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanImage {
    pub index: u32,
    pub kind: ImageKind,
    pub bytes: Vec<u8>,
}

/// A validated batch. `job_id` is the canonical lowercase UUID; `images` keep the order of
/// the request array, and their `index` values are unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchScanRequest {
    pub job_id: Option<String>,
    pub images: Vec<ScanImage>,
}

/// A validated batch whose photos were decoded inside the buffer that held its JSON: photo
/// `n` is `buffer[images[n].bytes]`. A 33 MiB body costs no second buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    pub job_id: Option<String>,
    pub buffer: Vec<u8>,
    pub images: Vec<PlacedImage>,
}

/// One validated photo of a [`DecodedBatch`]: where its bytes are in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedImage {
    pub index: u32,
    pub kind: ImageKind,
    pub bytes: std::ops::Range<usize>,
}

/// Where a photo's base64 text is: in the body (the usual case, so it is decoded in place),
/// or unescaped into a string of its own when the JSON escaped a character of it (`\/`).
enum Base64Text {
    InBody(std::ops::Range<usize>),
    Unescaped(String),
}

fn invalid_field(message: String, field: &str) -> ApiError {
    ApiError::invalid(message).with_details(json!({ "field": field }))
}

fn invalid_entry(message: String, field: &str, position: usize) -> ApiError {
    ApiError::invalid(message).with_details(json!({ "field": field, "position": position }))
}

/// Validates a `POST /api/scan-bookshelf/batch` body. Cheap structural checks over every
/// entry come first, so a malformed entry late in the array is reported before any image is
/// decoded; then the images are decoded and identified in array order.
pub fn parse_batch(body: &[u8]) -> Result<BatchScanRequest, ApiError> {
    let batch = decode_batch(body.to_vec())?;
    let images = batch
        .images
        .into_iter()
        .map(|image| ScanImage {
            index: image.index,
            kind: image.kind,
            bytes: batch.buffer[image.bytes].to_vec(),
        })
        .collect();
    Ok(BatchScanRequest {
        job_id: batch.job_id,
        images,
    })
}

/// As [`parse_batch`], decoding the photos in place in `body` (see [`DecodedBatch`]).
pub fn decode_batch(mut body: Vec<u8>) -> Result<DecodedBatch, ApiError> {
    let (job_id, texts) = check_batch(&body)?;
    // Each photo's bytes go right after the previous one's, at the start of the buffer: never
    // past the start of its own text, which comes later in the body than every earlier text.
    let mut written = 0;
    let mut images = Vec::with_capacity(texts.len());
    for (position, (index, text)) in texts.into_iter().enumerate() {
        let field = format!("images[{position}].data");
        let decoded = match text {
            Base64Text::InBody(range) => {
                base64::decode_in_place(&mut body, range, written, MAX_IMAGE_BYTES)
            }
            Base64Text::Unescaped(text) => {
                base64::decode(&text, MAX_IMAGE_BYTES).map(|bytes| {
                    // The unescaped text is no longer than its escaped form in the body,
                    // and the bytes no longer than the text: they fit before the next one.
                    body[written..written + bytes.len()].copy_from_slice(&bytes);
                    bytes.len()
                })
            }
        };
        let len = match decoded {
            Ok(len) => len,
            Err(DecodeError::TooLarge { .. }) => {
                let mut err = ApiError::too_large(MAX_IMAGE_BYTES);
                err.message = format!("{field} decodes to more than {MAX_IMAGE_BYTES} bytes");
                err.details = Some(json!({
                    "limitBytes": MAX_IMAGE_BYTES,
                    "field": field,
                    "position": position,
                }));
                return Err(err);
            }
            Err(e) => {
                return Err(invalid_entry(
                    format!("{field} is not valid base64: {e}"),
                    &field,
                    position,
                ))
            }
        };
        let bytes = written..written + len;
        if len == 0 {
            return Err(invalid_entry(format!("{field} is empty"), &field, position));
        }
        let kind = detect(&body[bytes.clone()]).ok_or_else(|| {
            ApiError::unsupported_media(format!("{field} is not a JPEG, PNG, WebP or HEIC image"))
                .with_details(json!({ "field": field, "position": position }))
        })?;
        images.push(PlacedImage { index, kind, bytes });
        written += len;
    }
    body.truncate(written);
    Ok(DecodedBatch {
        job_id,
        buffer: body,
        images,
    })
}

/// The checks of a batch body that need no decoding, in the order the contract reports
/// them: its size, nesting and JSON, `jobId`, `images`, each entry's shape and index. Gives
/// the job id and where each photo's text is.
#[allow(clippy::type_complexity)]
fn check_batch(body: &[u8]) -> Result<(Option<String>, Vec<(u32, Base64Text)>), ApiError> {
    if body.len() > MAX_BATCH_BODY_BYTES {
        return Err(ApiError::too_large(MAX_BATCH_BODY_BYTES));
    }
    if exceeds_depth(body, MAX_JSON_DEPTH) {
        return Err(ApiError::invalid(format!(
            "JSON nesting is deeper than {MAX_JSON_DEPTH} levels"
        ))
        .with_details(json!({ "maxDepth": MAX_JSON_DEPTH })));
    }
    // serde_json does not check the UTF-8 of strings it skips (unknown fields).
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid("request body is not valid UTF-8"))?;
    let raw: RawBody = serde_json::from_str(text)
        .map_err(|e| ApiError::invalid(format!("request body is not valid JSON: {e}")))?;
    let RawBody::Object { job_id, images } = raw else {
        return Err(ApiError::invalid("request body must be a JSON object"));
    };

    let job_id = match job_id {
        None | Some(Loose::Other("null")) => None,
        Some(Loose::Str(text)) => Some(parse_job_id(&text).ok_or_else(|| {
            invalid_field(
                "jobId must be a UUID such as 0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e".into(),
                "jobId",
            )
        })?),
        Some(other) => {
            return Err(invalid_field(
                format!("jobId must be a UUID string, not {}", other.kind()),
                "jobId",
            ))
        }
    };

    let (entries, count) = match images {
        None => return Err(invalid_field("images is missing".into(), "images")),
        Some(RawImages::Other(kind)) => {
            return Err(invalid_field(
                format!("images must be an array, not {kind}"),
                "images",
            ))
        }
        Some(RawImages::Array { entries, count }) => (entries, count),
    };
    if count == 0 || count > MAX_IMAGES {
        return Err(ApiError::invalid(format!(
            "images must hold 1 to {MAX_IMAGES} images; it holds {count}"
        ))
        .with_details(json!({ "field": "images", "count": count, "max": MAX_IMAGES })));
    }

    let mut checked = Vec::with_capacity(entries.len());
    let mut seen: HashMap<u32, usize> = HashMap::new();
    for (position, entry) in entries.into_iter().enumerate() {
        let (index, data) = check_entry(entry, position)?;
        if let Some(&first) = seen.get(&index) {
            let field = format!("images[{position}].index");
            return Err(ApiError::invalid(format!(
                "{field} {index} repeats images[{first}].index"
            ))
            .with_details(json!({
                "field": field,
                "position": position,
                "index": index,
                "firstPosition": first,
            })));
        }
        seen.insert(index, position);
        checked.push((index, data));
    }

    let base = body.as_ptr() as usize;
    let texts = checked
        .into_iter()
        .map(|(index, data)| {
            let text = match data {
                // serde_json borrows unescaped strings straight from `body`.
                Cow::Borrowed(text)
                    if (base..base + body.len()).contains(&(text.as_ptr() as usize)) =>
                {
                    let start = text.as_ptr() as usize - base;
                    Base64Text::InBody(start..start + text.len())
                }
                Cow::Borrowed(text) => Base64Text::Unescaped(text.to_string()),
                Cow::Owned(text) => Base64Text::Unescaped(text),
            };
            (index, text)
        })
        .collect();
    Ok((job_id, texts))
}

fn check_entry(entry: RawEntry<'_>, position: usize) -> Result<(u32, Cow<'_, str>), ApiError> {
    let (index, data) = match entry {
        RawEntry::Object { index, data } => (index, data),
        RawEntry::Other(kind) => {
            let field = format!("images[{position}]");
            return Err(invalid_entry(
                format!("{field} must be an object, not {kind}"),
                &field,
                position,
            ));
        }
    };
    let field = format!("images[{position}].index");
    let fail = |problem: String| {
        Err(invalid_entry(
            format!("{field} {problem}"),
            &field,
            position,
        ))
    };
    let index = match index {
        None => return fail("is missing".into()),
        Some(Loose::Num(Num::U64(n))) => match u32::try_from(n) {
            Ok(n) => n,
            Err(_) => return fail(format!("must be at most {}", u32::MAX)),
        },
        Some(Loose::Num(Num::Negative)) => return fail("must not be negative".into()),
        Some(Loose::Num(Num::F64(f))) if f < 0.0 => return fail("must not be negative".into()),
        // Strict: `1.0` is rejected too, since no client serialises an integer that way.
        Some(Loose::Num(Num::F64(_))) => return fail("must be an integer".into()),
        Some(other) => return fail(format!("must be a number, not {}", other.kind())),
    };
    let field = format!("images[{position}].data");
    match data {
        None => Err(invalid_entry(
            format!("{field} is missing"),
            &field,
            position,
        )),
        Some(Loose::Str(text)) => Ok((index, text)),
        Some(other) => Err(invalid_entry(
            format!("{field} must be a base64 string, not {}", other.kind()),
            &field,
            position,
        )),
    }
}

/// True when brackets outside strings nest deeper than `max`. A linear pre-pass, so that a
/// deeply nested body is refused with a 400 before any recursive parser sees it.
fn exceeds_depth(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    for (_, b) in structural_brackets(body) {
        if matches!(b, b'[' | b'{') {
            depth += 1;
            if depth > max {
                return true;
            }
        } else {
            depth = depth.saturating_sub(1);
        }
    }
    false
}

/// Validates a `POST /api/scan-bookshelf` body: a raw image with an image Content-Type, or a
/// multipart/form-data body whose `image` field holds it. The declared image type must be one
/// of the four, but the bytes decide the kind. For multipart the part's own Content-Type is
/// not checked (browsers often send `application/octet-stream`); the bytes still must be one
/// of the four. The caller should stop reading the body past `MAX_SINGLE_BODY_BYTES`.
pub fn parse_single(content_type: Option<&str>, body: Vec<u8>) -> Result<ScanImage, ApiError> {
    let ct = content_type.map(str::trim).unwrap_or_default();
    if ct.is_empty() {
        return Err(ApiError::unsupported_media(
            "Content-Type is missing; send image/jpeg, image/png, image/webp or image/heic, \
             or multipart/form-data with an `image` field",
        ));
    }
    let essence = ct.split(';').next().unwrap_or_default().trim();
    let bytes = if essence.eq_ignore_ascii_case("multipart/form-data") {
        if body.len() > MAX_SINGLE_BODY_BYTES {
            return Err(ApiError::too_large(MAX_SINGLE_BODY_BYTES));
        }
        let boundary = multipart::boundary(ct).ok_or_else(|| {
            ApiError::invalid("multipart/form-data needs a valid boundary parameter")
        })?;
        let parts = multipart::parse(&body, &boundary).map_err(|e| e.to_api_error())?;
        parts
            .into_iter()
            .find(|p| p.name.as_deref() == Some("image"))
            .map(|p| p.data)
            .ok_or_else(|| invalid_field("multipart field `image` is missing".into(), "image"))?
    } else {
        if kind_from_media_type(ct).is_none() {
            return Err(ApiError::unsupported_media(format!(
                "Content-Type {essence} is not accepted; send image/jpeg, image/png, image/webp \
                 or image/heic, or multipart/form-data with an `image` field"
            )));
        }
        body
    };
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(ApiError::too_large(MAX_IMAGE_BYTES));
    }
    if bytes.is_empty() {
        return Err(ApiError::invalid("the image is empty"));
    }
    let kind = detect(&bytes).ok_or_else(|| {
        ApiError::unsupported_media("the image is not a JPEG, PNG, WebP or HEIC file")
    })?;
    Ok(ScanImage {
        index: 0,
        kind,
        bytes,
    })
}

// The batch body is read through small purpose-made shapes instead of `serde_json::Value`:
// base64 strings are borrowed from the body rather than copied (the body can be 36 MiB), only
// the first MAX_IMAGES entries are kept, and unknown fields are skipped without allocating,
// so a wide body cannot make the parser allocate more than a small multiple of its size.

#[derive(Debug)]
enum Num {
    U64(u64),
    /// Any negative integer; its value never matters.
    Negative,
    F64(f64),
}

/// Any JSON value, keeping only strings and numbers.
#[derive(Debug)]
enum Loose<'a> {
    Str(Cow<'a, str>),
    Num(Num),
    Other(&'static str),
}

impl Loose<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Num(_) => "a number",
            Self::Other(kind) => kind,
        }
    }
}

enum RawBody<'a> {
    Object {
        job_id: Option<Loose<'a>>,
        images: Option<RawImages<'a>>,
    },
    Other,
}

enum RawImages<'a> {
    Array {
        entries: Vec<RawEntry<'a>>,
        count: usize,
    },
    Other(&'static str),
}

enum RawEntry<'a> {
    Object {
        index: Option<Loose<'a>>,
        data: Option<Loose<'a>>,
    },
    Other(&'static str),
}

/// How a shape is built from each kind of JSON value; by default, as "something else",
/// skipping nested content without keeping it.
trait Shape<'de>: Sized {
    fn other(kind: &'static str) -> Self;

    fn string(_text: Cow<'de, str>) -> Self {
        Self::other("a string")
    }

    fn number(_n: Num) -> Self {
        Self::other("a number")
    }

    fn map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Self::other("an object"))
    }

    fn seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Self::other("an array"))
    }
}

struct ShapeVisitor<T>(PhantomData<T>);

impl<'de, T: Shape<'de>> Visitor<'de> for ShapeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _v: bool) -> Result<T, E> {
        Ok(T::other("a boolean"))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok(T::number(Num::U64(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Ok(T::number(if v >= 0 {
            Num::U64(v.unsigned_abs())
        } else {
            Num::Negative
        }))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        Ok(T::number(Num::F64(v)))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<T, E> {
        Ok(T::string(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok(T::string(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<T, E> {
        Ok(T::string(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::other("null"))
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Ok(T::other("null"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::seq(seq)
    }
}

macro_rules! deserialize_via_shape {
    ($($ty:ident),*) => {$(
        impl<'de> Deserialize<'de> for $ty<'de> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(ShapeVisitor(PhantomData))
            }
        }
    )*};
}

deserialize_via_shape!(Loose, RawBody, RawImages, RawEntry);

impl<'de> Shape<'de> for Loose<'de> {
    fn other(kind: &'static str) -> Self {
        Self::Other(kind)
    }

    fn string(text: Cow<'de, str>) -> Self {
        Self::Str(text)
    }

    fn number(n: Num) -> Self {
        Self::Num(n)
    }
}

/// An object key, compared without keeping it.
enum Key {
    JobId,
    Images,
    Index,
    Data,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "jobId" => Key::JobId,
                    "images" => Key::Images,
                    "index" => Key::Index,
                    "data" => Key::Data,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Fills `slot` once; a repeated key is refused rather than letting either copy win silently.
fn fill<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Shape<'de> for RawBody<'de> {
    fn other(_kind: &'static str) -> Self {
        Self::Other
    }

    fn map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut job_id = None;
        let mut images = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::JobId => fill(&mut map, &mut job_id, "jobId")?,
                Key::Images => fill(&mut map, &mut images, "images")?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Self::Object { job_id, images })
    }
}

impl<'de> Shape<'de> for RawImages<'de> {
    fn other(kind: &'static str) -> Self {
        Self::Other(kind)
    }

    fn seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut entries = Vec::new();
        let mut count = 0usize;
        loop {
            let more = if entries.len() < MAX_IMAGES {
                match seq.next_element::<RawEntry>()? {
                    Some(entry) => {
                        entries.push(entry);
                        true
                    }
                    None => false,
                }
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(Self::Array { entries, count });
            }
            count += 1;
        }
    }
}

impl<'de> Shape<'de> for RawEntry<'de> {
    fn other(kind: &'static str) -> Self {
        Self::Other(kind)
    }

    fn map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut index = None;
        let mut data = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Index => fill(&mut map, &mut index, "index")?,
                Key::Data => fill(&mut map, &mut data, "data")?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Self::Object { index, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::Value;

    const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00";
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01";
    const WEBP: &[u8] = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00";
    const JOB: &str = "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e";

    fn b64(bytes: &[u8]) -> String {
        crate::base64::encode(bytes)
    }

    fn body(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn one(extra: Value) -> Value {
        let mut entry = json!({ "index": 0, "data": b64(JPEG) });
        if let (Some(e), Some(x)) = (entry.as_object_mut(), extra.as_object()) {
            for (k, v) in x {
                e.insert(k.clone(), v.clone());
            }
        }
        entry
    }

    #[test]
    fn accepts_a_valid_batch() {
        let req = parse_batch(&body(json!({
            "jobId": JOB.to_uppercase(),
            "images": [
                { "index": 2, "data": b64(JPEG) },
                { "index": 0, "data": format!("data:image/png;base64,{}", b64(PNG)), "name": "x" },
                { "index": 7, "data": b64(WEBP).chars().collect::<Vec<_>>()
                    .chunks(8).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("\r\n") },
            ],
            "ignored": { "deep": [1, 2, { "x": null }] },
        })))
        .unwrap();
        assert_eq!(req.job_id.as_deref(), Some(JOB));
        let got: Vec<(u32, ImageKind, &[u8])> = req
            .images
            .iter()
            .map(|i| (i.index, i.kind, i.bytes.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (2, ImageKind::Jpeg, JPEG),
                (0, ImageKind::Png, PNG),
                (7, ImageKind::Webp, WEBP),
            ]
        );
    }

    #[test]
    fn job_id_is_optional_and_must_be_a_uuid() {
        let images = json!([{ "index": 0, "data": b64(JPEG) }]);
        let table: Vec<(Value, Result<Option<&str>, &str>)> = vec![
            (json!({ "images": images }), Ok(None)),
            (json!({ "jobId": null, "images": images }), Ok(None)),
            (json!({ "jobId": JOB, "images": images }), Ok(Some(JOB))),
            (
                json!({ "jobId": "not-a-uuid", "images": images }),
                Err("jobId must be a UUID"),
            ),
            (
                json!({ "jobId": JOB.replace('-', ""), "images": images }),
                Err("jobId must be a UUID"),
            ),
            (
                json!({ "jobId": 42, "images": images }),
                Err("not a number"),
            ),
            (
                json!({ "jobId": [JOB], "images": images }),
                Err("not an array"),
            ),
        ];
        for (value, want) in table {
            let got = parse_batch(&body(value.clone()));
            match want {
                Ok(id) => assert_eq!(got.unwrap().job_id.as_deref(), id, "{value}"),
                Err(text) => {
                    let err = got.unwrap_err();
                    assert_eq!(err.code, ErrorCode::InvalidRequest, "{value}");
                    assert!(err.message.contains(text), "{value}: {}", err.message);
                    assert_eq!(err.details, Some(json!({ "field": "jobId" })));
                }
            }
        }
    }

    #[test]
    fn rejects_invalid_batches() {
        let jpeg = b64(JPEG);
        let six: Vec<Value> = (0..6)
            .map(|i| json!({ "index": i, "data": jpeg }))
            .collect();
        let at = |pos: usize, field: &str| json!({ "field": format!("images[{pos}]{field}"), "position": pos });
        // (name, body, code, message fragment, details)
        type Case<'a> = (&'a str, Vec<u8>, ErrorCode, &'a str, Option<Value>);
        let table: Vec<Case> = vec![
            (
                "not json",
                b"{images:".to_vec(),
                ErrorCode::InvalidRequest,
                "not valid JSON",
                None,
            ),
            (
                "invalid UTF-8 in a skipped field",
                [
                    b"{\"note\":\"\xC3\x28\xFF\",\"images\":[{\"index\":0,\"data\":\"".as_slice(),
                    jpeg.as_bytes(),
                    b"\"}]}",
                ]
                .concat(),
                ErrorCode::InvalidRequest,
                "not valid UTF-8",
                None,
            ),
            (
                "empty body",
                Vec::new(),
                ErrorCode::InvalidRequest,
                "not valid JSON",
                None,
            ),
            (
                "trailing junk",
                b"{\"images\":[]} x".to_vec(),
                ErrorCode::InvalidRequest,
                "not valid JSON",
                None,
            ),
            (
                "array body",
                body(json!([one(json!({}))])),
                ErrorCode::InvalidRequest,
                "JSON object",
                None,
            ),
            (
                "string body",
                body(json!("images")),
                ErrorCode::InvalidRequest,
                "JSON object",
                None,
            ),
            (
                "missing images",
                body(json!({ "jobId": JOB })),
                ErrorCode::InvalidRequest,
                "images is missing",
                Some(json!({ "field": "images" })),
            ),
            (
                "images null",
                body(json!({ "images": null })),
                ErrorCode::InvalidRequest,
                "not null",
                Some(json!({ "field": "images" })),
            ),
            (
                "images object",
                body(json!({ "images": { "0": jpeg } })),
                ErrorCode::InvalidRequest,
                "not an object",
                Some(json!({ "field": "images" })),
            ),
            (
                "zero images",
                body(json!({ "images": [] })),
                ErrorCode::InvalidRequest,
                "holds 0",
                Some(json!({ "field": "images", "count": 0, "max": 5 })),
            ),
            (
                "six images",
                body(json!({ "images": six })),
                ErrorCode::InvalidRequest,
                "holds 6",
                Some(json!({ "field": "images", "count": 6, "max": 5 })),
            ),
            (
                "duplicate images key",
                b"{\"images\":[],\"images\":[]}".to_vec(),
                ErrorCode::InvalidRequest,
                "duplicate field",
                None,
            ),
            (
                "entry not object",
                body(json!({ "images": [one(json!({})), jpeg] })),
                ErrorCode::InvalidRequest,
                "images[1] must be an object, not a string",
                Some(at(1, "")),
            ),
            (
                "index missing",
                body(json!({ "images": [{ "data": jpeg }] })),
                ErrorCode::InvalidRequest,
                "images[0].index is missing",
                Some(at(0, ".index")),
            ),
            (
                "index negative",
                body(json!({ "images": [one(json!({})), one(json!({ "index": -1 }))] })),
                ErrorCode::InvalidRequest,
                "images[1].index must not be negative",
                Some(at(1, ".index")),
            ),
            (
                "index negative float",
                body(json!({ "images": [one(json!({ "index": -0.5 }))] })),
                ErrorCode::InvalidRequest,
                "must not be negative",
                Some(at(0, ".index")),
            ),
            (
                "index fractional",
                body(json!({ "images": [one(json!({ "index": 1.5 }))] })),
                ErrorCode::InvalidRequest,
                "must be an integer",
                Some(at(0, ".index")),
            ),
            (
                "index float form",
                b"{\"images\":[{\"index\":1.0,\"data\":\"/9j/\"}]}".to_vec(),
                ErrorCode::InvalidRequest,
                "must be an integer",
                Some(at(0, ".index")),
            ),
            (
                "index exponent",
                b"{\"images\":[{\"index\":1e3,\"data\":\"/9j/\"}]}".to_vec(),
                ErrorCode::InvalidRequest,
                "must be an integer",
                Some(at(0, ".index")),
            ),
            (
                "index too big",
                body(json!({ "images": [one(json!({ "index": 4_294_967_296u64 }))] })),
                ErrorCode::InvalidRequest,
                "at most 4294967295",
                Some(at(0, ".index")),
            ),
            (
                "index huge",
                b"{\"images\":[{\"index\":1e400,\"data\":\"/9j/\"}]}".to_vec(),
                ErrorCode::InvalidRequest,
                "not valid JSON",
                None,
            ),
            (
                "index string",
                body(json!({ "images": [one(json!({ "index": "1" }))] })),
                ErrorCode::InvalidRequest,
                "must be a number, not a string",
                Some(at(0, ".index")),
            ),
            (
                "index null",
                body(json!({ "images": [one(json!({ "index": null }))] })),
                ErrorCode::InvalidRequest,
                "must be a number, not null",
                Some(at(0, ".index")),
            ),
            (
                "index repeated key",
                b"{\"images\":[{\"index\":1,\"index\":2,\"data\":\"/9j/\"}]}".to_vec(),
                ErrorCode::InvalidRequest,
                "duplicate field `index`",
                None,
            ),
            (
                "data missing",
                body(json!({ "images": [{ "index": 0 }] })),
                ErrorCode::InvalidRequest,
                "images[0].data is missing",
                Some(at(0, ".data")),
            ),
            (
                "data not string",
                body(json!({ "images": [one(json!({ "data": [1, 2] }))] })),
                ErrorCode::InvalidRequest,
                "must be a base64 string, not an array",
                Some(at(0, ".data")),
            ),
            (
                "data bad base64",
                body(
                    json!({ "images": [one(json!({})), one(json!({ "index": 1, "data": "/9j/4AAQ!!" }))] }),
                ),
                ErrorCode::InvalidRequest,
                "images[1].data is not valid base64",
                Some(at(1, ".data")),
            ),
            (
                "data bad length",
                body(json!({ "images": [one(json!({ "data": "/9j/4" }))] })),
                ErrorCode::InvalidRequest,
                "not valid base64",
                Some(at(0, ".data")),
            ),
            (
                "data empty",
                body(json!({ "images": [one(json!({ "data": "" }))] })),
                ErrorCode::InvalidRequest,
                "images[0].data is empty",
                Some(at(0, ".data")),
            ),
            (
                "data url without payload",
                body(json!({ "images": [one(json!({ "data": "data:image/jpeg;base64," }))] })),
                ErrorCode::InvalidRequest,
                "is empty",
                Some(at(0, ".data")),
            ),
            (
                "duplicate index",
                body(
                    json!({ "images": [one(json!({ "index": 3 })), one(json!({ "index": 1 })), one(json!({ "index": 3 }))] }),
                ),
                ErrorCode::InvalidRequest,
                "images[2].index 3 repeats images[0].index",
                Some(
                    json!({ "field": "images[2].index", "position": 2, "index": 3, "firstPosition": 0 }),
                ),
            ),
            (
                "structure checked before decoding",
                body(json!({ "images": [one(json!({ "data": "!!!" })), { "index": 1 }] })),
                ErrorCode::InvalidRequest,
                "images[1].data is missing",
                Some(at(1, ".data")),
            ),
            (
                "unknown bytes",
                body(
                    json!({ "images": [one(json!({})), one(json!({ "index": 1, "data": b64(b"GIF89a\x01\x00") }))] }),
                ),
                ErrorCode::UnsupportedMediaType,
                "images[1].data is not a JPEG, PNG, WebP or HEIC image",
                Some(at(1, ".data")),
            ),
        ];
        for (name, bytes, code, fragment, details) in table {
            let err = parse_batch(&bytes).unwrap_err();
            assert_eq!(err.code, code, "{name}: {}", err.message);
            assert!(err.message.contains(fragment), "{name}: {}", err.message);
            if details.is_some() {
                assert_eq!(err.details, details, "{name}");
            }
        }
    }

    #[test]
    fn enforces_size_limits() {
        let mut big = JPEG.to_vec();
        big.resize(MAX_IMAGE_BYTES + 1, 0);
        let err = parse_batch(&body(
            json!({ "images": [one(json!({})), one(json!({ "index": 1, "data": b64(&big) }))] }),
        ))
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::PayloadTooLarge);
        assert_eq!(
            err.details,
            Some(
                json!({ "limitBytes": MAX_IMAGE_BYTES, "field": "images[1].data", "position": 1 })
            )
        );

        big.truncate(MAX_IMAGE_BYTES);
        let ok = parse_batch(&body(
            json!({ "images": [one(json!({ "data": b64(&big) }))] }),
        ))
        .unwrap();
        assert_eq!(ok.images[0].bytes.len(), MAX_IMAGE_BYTES);

        let whole = vec![b' '; MAX_BATCH_BODY_BYTES + 1];
        let err = parse_batch(&whole).unwrap_err();
        assert_eq!(err.code, ErrorCode::PayloadTooLarge);
        assert_eq!(
            err.details,
            Some(json!({ "limitBytes": MAX_BATCH_BODY_BYTES }))
        );
    }

    #[test]
    fn refuses_deep_nesting_without_recursing() {
        let deep = |n: usize, open: &str, close: &str| {
            format!(
                "{{\"images\":[{}{}],\"x\":1}}",
                open.repeat(n),
                close.repeat(n)
            )
            .into_bytes()
        };
        let table: Vec<(&str, Vec<u8>, bool)> = vec![
            ("arrays 100k", deep(100_000, "[", "]"), true),
            ("objects 10k", deep(10_000, "{\"a\":", "}"), true),
            ("unclosed 1M", "[".repeat(1_000_000).into_bytes(), true),
            ("within limit", deep(MAX_JSON_DEPTH - 2, "[", "]"), false),
            (
                "brackets inside strings do not count",
                format!("{{\"jobId\":\"{}\",\"images\":[]}}", "[\\\"{".repeat(1000)).into_bytes(),
                false,
            ),
        ];
        for (name, bytes, too_deep) in table {
            let err = parse_batch(&bytes).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{name}");
            assert_eq!(
                err.message.contains("nesting"),
                too_deep,
                "{name}: {}",
                err.message
            );
        }
    }

    #[test]
    fn wide_bodies_keep_only_the_first_entries() {
        let entries = vec!["{\"index\":0,\"data\":\"/9j/\"}"; 50_000].join(",");
        let text = format!("{{\"images\":[{entries}]}}");
        let err = parse_batch(text.as_bytes()).unwrap_err();
        assert_eq!(err.details.unwrap()["count"], 50_000);
    }

    #[test]
    fn parses_single_images() {
        let form = |field: &str, data: &[u8]| {
            let mut b = format!(
                "--B0undary\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"s.jpg\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .into_bytes();
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n--B0undary--\r\n");
            b
        };
        let multipart = Some("multipart/form-data; boundary=B0undary");
        let mut big = JPEG.to_vec();
        big.resize(MAX_IMAGE_BYTES + 1, 0);
        // (name, content type, body, Ok(kind) or Err(code))
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Vec<u8>,
            Result<ImageKind, ErrorCode>,
        );
        let table: Vec<Case> = vec![
            (
                "raw jpeg",
                Some("image/jpeg"),
                JPEG.to_vec(),
                Ok(ImageKind::Jpeg),
            ),
            (
                "bytes win over declared type",
                Some("image/png"),
                JPEG.to_vec(),
                Ok(ImageKind::Jpeg),
            ),
            (
                "raw webp with params",
                Some("IMAGE/WEBP; q=1"),
                WEBP.to_vec(),
                Ok(ImageKind::Webp),
            ),
            (
                "multipart",
                multipart,
                form("image", PNG),
                Ok(ImageKind::Png),
            ),
            (
                "missing content type",
                None,
                JPEG.to_vec(),
                Err(ErrorCode::UnsupportedMediaType),
            ),
            (
                "blank content type",
                Some("  "),
                JPEG.to_vec(),
                Err(ErrorCode::UnsupportedMediaType),
            ),
            (
                "gif content type",
                Some("image/gif"),
                JPEG.to_vec(),
                Err(ErrorCode::UnsupportedMediaType),
            ),
            (
                "octet stream",
                Some("application/octet-stream"),
                JPEG.to_vec(),
                Err(ErrorCode::UnsupportedMediaType),
            ),
            (
                "unknown bytes",
                Some("image/jpeg"),
                b"GIF89a".to_vec(),
                Err(ErrorCode::UnsupportedMediaType),
            ),
            (
                "unknown bytes in form",
                multipart,
                form("image", b"%PDF-1.4"),
                Err(ErrorCode::UnsupportedMediaType),
            ),
            (
                "empty raw body",
                Some("image/jpeg"),
                Vec::new(),
                Err(ErrorCode::InvalidRequest),
            ),
            (
                "too large raw",
                Some("image/jpeg"),
                big.clone(),
                Err(ErrorCode::PayloadTooLarge),
            ),
            (
                "too large in form",
                multipart,
                form("image", &big),
                Err(ErrorCode::PayloadTooLarge),
            ),
            (
                "form without boundary",
                Some("multipart/form-data"),
                form("image", JPEG),
                Err(ErrorCode::InvalidRequest),
            ),
            (
                "form missing field",
                multipart,
                form("photo", JPEG),
                Err(ErrorCode::InvalidRequest),
            ),
            (
                "form truncated",
                multipart,
                form("image", JPEG)[..60].to_vec(),
                Err(ErrorCode::InvalidRequest),
            ),
        ];
        for (name, ct, bytes, want) in table {
            let got = parse_single(ct, bytes.clone());
            match want {
                Ok(kind) => {
                    let image = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!((image.index, image.kind), (0, kind), "{name}");
                }
                Err(code) => assert_eq!(got.map(|_| ()).unwrap_err().code, code, "{name}"),
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let atoms = prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just("\"images\"".to_string()),
            Just("\"index\"".to_string()),
            Just("\"data\"".to_string()),
            Just("\"jobId\"".to_string()),
            Just("\"/9j/4AAQ\"".to_string()),
            Just("\"iVBORw0KGgo=\"".to_string()),
            Just("\"0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e\"".to_string()),
            Just("null".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "\"[^\"]{0,8}\"",
        ];
        prop::collection::vec(atoms, 0..48).prop_map(|v| v.concat().into_bytes())
    }

    proptest! {
        #[test]
        fn photos_decoded_in_place_are_the_photos_sent(
            photos in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..=5),
            escape_slashes in prop::collection::vec(any::<bool>(), 5),
            job_id_last in any::<bool>(),
        ) {
            // JPEGs of random bytes, some with their `/` escaped as JSON allows (`\/`), so
            // that serde_json unescapes them into strings of their own.
            let photos: Vec<Vec<u8>> = photos
                .into_iter()
                .map(|rest| [&[0xFFu8, 0xD8, 0xFF, 0xE0][..], &rest].concat())
                .collect();
            let images: Vec<String> = photos
                .iter()
                .enumerate()
                .map(|(i, photo)| {
                    let mut text = base64::encode(photo);
                    if escape_slashes[i] {
                        text = text.replace('/', "\\/");
                    }
                    format!(r#"{{"index":{i},"data":"{text}"}}"#)
                })
                .collect();
            let id = r#""jobId":"0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e""#;
            let images = format!(r#""images":[{}]"#, images.join(","));
            let body = match job_id_last {
                true => format!("{{{images},{id}}}"),
                false => format!("{{{id},{images}}}"),
            };
            let batch = parse_batch(body.as_bytes()).unwrap();
            let got: Vec<Vec<u8>> = batch.images.into_iter().map(|image| image.bytes).collect();
            prop_assert_eq!(got, photos);
        }

        #[test]
        fn parse_batch_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_batch(&body);
        }

        #[test]
        fn parse_batch_never_panics_on_jsonish(body in jsonish()) {
            if let Ok(req) = parse_batch(&body) {
                prop_assert!((1..=MAX_IMAGES).contains(&req.images.len()));
            }
        }

        #[test]
        fn parse_single_never_panics(ct in ".{0,60}", body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_single(Some(&ct), body);
        }
    }
}
