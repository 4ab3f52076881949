//! The creation routes: each upload is validated before any job exists, then sent to the new
//! job's object with its inputs, which the object stores in slices.
//!
//! Every route makes the checks that need no body first (media type, declared length), then
//! counts the request against the client's rate limit, and only then reads the body: a client
//! over its limit is refused before it uploads anything.

use super::edge::Ctx;
use super::http;
use super::job_object::stub_for;
use crate::error::ApiError;
use crate::ids;
use crate::internal::{self, Blob, CreateJob};
use crate::job::Pipeline;
use crate::keys;
use crate::limits::{
    single_query_param, CSV_BODY_BYTES, CSV_HEADER_WINDOW_BYTES, ENRICHMENT_BODY_BYTES,
    MULTIPART_OVERHEAD_BYTES, SMALL_JSON_BODY_BYTES,
};
use crate::multipart;
use crate::pipelines::csv::{
    format_hint, read_header_with, CsvWork, HeaderError, MAX_HEADER_COLUMNS,
};
use crate::pipelines::enrich::{self, EnrichWork};
use crate::pipelines::scan::image::{kind_from_media_type, ImageKind};
use crate::pipelines::scan::request as scan_request;
use crate::pipelines::scan::{ScanPhoto, ScanWork};
use crate::pipelines::synthetic;
use crate::pipelines::work::Work;
use crate::rate_limit::Bucket;
use serde_json::json;
use wasm_streams::ReadableStream;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::{Method, Request, RequestInit, Response};

/// A creation's `Idempotency-Key` (contract 9.3), when it sent one.
struct Idempotent {
    key: Option<String>,
}

impl Idempotent {
    fn of(req: &Request) -> Result<Self, ApiError> {
        let key = match http::header(req, "idempotency-key") {
            None => None,
            Some(raw) => Some(ids::idempotency_key(&raw)?.to_string()),
        };
        Ok(Self { key })
    }

    /// The job id: a proposed one, else one derived from the key (so every repeat reaches the
    /// same object), else a fresh one; and the request's hash when there is a key.
    fn job(
        &self,
        ctx: &Ctx<'_>,
        route: &str,
        proposed: Option<String>,
        parts: &[&[u8]],
    ) -> (String, Option<String>) {
        let Some(key) = &self.key else {
            return (proposed.unwrap_or_else(|| ctx.fresh_job_id()), None);
        };
        let job_id = proposed.unwrap_or_else(|| {
            ids::job_id_for_key(ctx.config.token_signing_key.as_bytes(), route, key)
        });
        let proposed_part = job_id.as_bytes();
        let mut all: Vec<&[u8]> = vec![proposed_part];
        all.extend_from_slice(parts);
        (job_id.clone(), Some(ids::request_hash(route, key, &all)))
    }
}

/// `POST /api/test/jobs` (only with `ENABLE_TEST_ROUTES`).
pub async fn synthetic_job(ctx: &Ctx<'_>, req: &mut Request) -> Result<Response, ApiError> {
    let idempotent = Idempotent::of(req)?;
    let body = http::read_body_limited(req, SMALL_JSON_BODY_BYTES).await?;
    let (spec, proposed) = synthetic::parse_spec(&body)?;
    let proposed = ctx.proposed_job_id(proposed)?;
    let canonical = serde_json::to_vec(&spec).unwrap_or_default();
    let (job_id, idempotency) = idempotent.job(ctx, "synthetic", proposed, &[&canonical]);
    let create = CreateJob {
        job_id,
        pipeline: spec.pipeline,
        total_count: spec.items,
        work: Work::Synthetic(spec),
        blobs: Vec::new(),
        idempotency,
    };
    create_job(ctx, create, Vec::new()).await
}

/// `POST /api/scan-bookshelf`: one raw or multipart image.
pub async fn single_scan(ctx: &Ctx<'_>, req: &mut Request) -> Result<Response, ApiError> {
    let idempotent = Idempotent::of(req)?;
    let content_type = http::header(req, "content-type");
    http::check_declared_length(req, scan_request::MAX_SINGLE_BODY_BYTES)?;
    single_scan_media(content_type.as_deref())?;
    ctx.limit(Bucket::Scan).await?;
    let body = http::read_body_limited(req, scan_request::MAX_SINGLE_BODY_BYTES).await?;
    let image = scan_request::parse_single(content_type.as_deref(), body)?;
    let ids = idempotent.job(ctx, "scan", None, &[&image.bytes]);
    let photo = (image.index, image.kind, image.bytes.len());
    create_scan(ctx, ids, vec![photo], image.bytes).await
}

/// Refuses, before the body is read, a single scan whose `Content-Type` can only end in 415:
/// the very answer `parse_single` gives, asked with no body.
fn single_scan_media(content_type: Option<&str>) -> Result<(), ApiError> {
    let ct = content_type.unwrap_or_default();
    let essence = ct.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("multipart/form-data") || kind_from_media_type(ct).is_some() {
        return Ok(());
    }
    scan_request::parse_single(content_type, Vec::new()).map(|_| ())
}

/// `POST /api/scan-bookshelf/batch`: 1 to 5 base64 images in JSON.
pub async fn batch_scan(ctx: &Ctx<'_>, req: &mut Request) -> Result<Response, ApiError> {
    require_json(req)?;
    let idempotent = Idempotent::of(req)?;
    http::check_declared_length(req, scan_request::MAX_BATCH_BODY_BYTES)?;
    ctx.limit(Bucket::Scan).await?;
    let body = http::read_body_limited(req, scan_request::MAX_BATCH_BODY_BYTES).await?;
    // The photos are decoded where their text was: no second buffer for a 33 MiB body.
    let batch = scan_request::decode_batch(body)?;
    let proposed = ctx.proposed_job_id(batch.job_id.clone())?;
    let indexes: Vec<u8> = batch
        .images
        .iter()
        .flat_map(|image| image.index.to_be_bytes())
        .collect();
    let mut parts: Vec<&[u8]> = vec![&indexes];
    parts.extend(
        batch
            .images
            .iter()
            .map(|image| &batch.buffer[image.bytes.clone()]),
    );
    // Scan routes share their key space: a single scan and a batch are one kind of job.
    let ids = idempotent.job(ctx, "scan", proposed, &parts);
    let photos = batch
        .images
        .iter()
        .map(|image| (image.index, image.kind, image.bytes.len()))
        .collect();
    // The photos lie one after another at the start of the buffer, in request order.
    create_scan(ctx, ids, photos, batch.buffer).await
}

/// `POST /api/enrichment/batch`: 1 to 100 books in JSON.
pub async fn enrichment(ctx: &Ctx<'_>, req: &mut Request) -> Result<Response, ApiError> {
    require_json(req)?;
    let idempotent = Idempotent::of(req)?;
    http::check_declared_length(req, ENRICHMENT_BODY_BYTES)?;
    ctx.limit(Bucket::Enrichment).await?;
    let body = http::read_body_limited(req, ENRICHMENT_BODY_BYTES).await?;
    let request = enrich::parse_request(&body)?;
    let proposed = ctx.proposed_job_id(request.job_id.clone())?;
    let books =
        serde_json::to_vec(&request.books).map_err(|e| http::internal("encoding books", e))?;
    let (job_id, idempotency) = idempotent.job(ctx, "enrichment", proposed, &[&books]);
    let create = CreateJob {
        job_id,
        pipeline: Pipeline::BatchEnrichment,
        total_count: request.books.len() as u64,
        work: Work::Enrich(EnrichWork::new(request.books.len())),
        blobs: vec![Blob {
            key: keys::ENRICH_INPUT.into(),
            len: books.len(),
        }],
        idempotency,
    };
    create_job(ctx, create, books).await
}

/// `POST /api/import/csv`: the header is checked before any job exists (contract section 2).
pub async fn csv_import(ctx: &Ctx<'_>, req: &mut Request) -> Result<Response, ApiError> {
    let idempotent = Idempotent::of(req)?;
    let query_format = csv_query_format(req)?;
    let upload = csv_upload(req)?;
    http::check_declared_length(req, upload.body_limit())?;
    ctx.limit(Bucket::Csv).await?;
    let (file, field_format) = read_csv_upload(req, upload).await?;
    let hint = format_hint(query_format.as_deref(), field_format.as_deref())
        .map_err(|message| ApiError::invalid(message).with_details(json!({ "field": "format" })))?;
    let prefix = &file[..file.len().min(CSV_HEADER_WINDOW_BYTES)];
    let (header, cursor) =
        read_header_with(prefix, prefix.len() == file.len(), hint).map_err(csv_header_error)?;
    let hint_part = format!("{hint:?}");
    let (job_id, idempotency) = idempotent.job(ctx, "csv", None, &[hint_part.as_bytes(), &file]);
    let create = CreateJob {
        job_id,
        pipeline: Pipeline::CsvImport,
        total_count: 0,
        work: Work::Csv(CsvWork::new(header, cursor, file.len())),
        blobs: blobs_for(keys::CSV_INPUT_PREFIX, file.len()),
        idempotency,
    };
    create_job(ctx, create, file).await
}

/// Media types a CSV upload may declare: the standard one and those browsers and spreadsheet
/// programs commonly send for `.csv` files.
const CSV_MEDIA_TYPES: &[&str] = &[
    "text/csv",
    "application/csv",
    "text/comma-separated-values",
    "application/vnd.ms-excel",
];

/// The `format` query parameter of a CSV upload (contract 9.1), if given once.
fn csv_query_format(req: &Request) -> Result<Option<String>, ApiError> {
    let pairs = http::query_pairs(req)?;
    Ok(single_query_param(&pairs, "format")?.map(str::to_owned))
}

/// How a CSV upload comes: the raw file, or the `file` field of a multipart form.
#[derive(Clone, Copy)]
enum CsvUpload {
    Raw,
    Multipart,
}

impl CsvUpload {
    fn body_limit(self) -> usize {
        match self {
            CsvUpload::Raw => CSV_BODY_BYTES,
            CsvUpload::Multipart => CSV_BODY_BYTES + MULTIPART_OVERHEAD_BYTES,
        }
    }
}

/// The kind of a CSV upload by its media type; other media types are 415.
fn csv_upload(req: &Request) -> Result<CsvUpload, ApiError> {
    let media = http::media_type(req).unwrap_or_default();
    if CSV_MEDIA_TYPES.contains(&media.as_str()) {
        return Ok(CsvUpload::Raw);
    }
    if media == "multipart/form-data" {
        return Ok(CsvUpload::Multipart);
    }
    let shown = if media.is_empty() {
        "missing"
    } else {
        media.as_str()
    };
    Err(ApiError::unsupported_media(format!(
        "Content-Type {shown} is not accepted; send text/csv, or multipart/form-data with a `file` field"
    )))
}

/// Reads a CSV upload: the raw body, or the `file` field of a multipart form with the form's
/// `format` field if any. Over 10 MiB is 413.
async fn read_csv_upload(
    req: &mut Request,
    upload: CsvUpload,
) -> Result<(Vec<u8>, Option<Vec<u8>>), ApiError> {
    let body = http::read_body_limited(req, upload.body_limit()).await?;
    if let CsvUpload::Raw = upload {
        return Ok((body, None));
    }
    let content_type = http::header(req, "content-type").unwrap_or_default();
    let boundary = multipart::boundary(&content_type)
        .ok_or_else(|| ApiError::invalid("multipart/form-data needs a boundary parameter"))?;
    let parts = multipart::parse(&body, &boundary).map_err(|e| e.to_api_error())?;
    let file = multipart::find_field(&parts, "file")
        .ok_or_else(|| ApiError::invalid("the multipart form has no `file` field"))?;
    if file.data.len() > CSV_BODY_BYTES {
        return Err(ApiError::too_large(CSV_BODY_BYTES));
    }
    let format = multipart::find_field(&parts, "format").map(|part| part.data.clone());
    Ok((file.data.clone(), format))
}

fn csv_header_error(err: HeaderError) -> ApiError {
    let details = match &err {
        HeaderError::NoTitleColumn { columns_found } => json!({ "columnsFound": columns_found }),
        HeaderError::Empty => json!({ "reason": "empty" }),
        HeaderError::TooManyColumns { count } => {
            json!({ "reason": "too_many_columns", "columns": count, "maxColumns": MAX_HEADER_COLUMNS })
        }
        HeaderError::TooLong { limit } => {
            json!({ "reason": "header_too_long", "limitBytes": limit })
        }
    };
    ApiError::invalid(format!(
        "the CSV header cannot be imported: {}",
        err.message()
    ))
    .with_details(details)
}

/// The JSON creation routes take `application/json` only (contract section 1: 415).
fn require_json(req: &Request) -> Result<(), ApiError> {
    match http::media_type(req).as_deref() {
        Some("application/json") => Ok(()),
        Some(other) => Err(ApiError::unsupported_media(format!(
            "Content-Type {other} is not accepted here; send application/json"
        ))),
        None => Err(ApiError::unsupported_media(
            "Content-Type is missing; send application/json",
        )),
    }
}

/// Creates a scan job whose photos are stored in slices, one series per photo.
async fn create_scan(
    ctx: &Ctx<'_>,
    (job_id, idempotency): (String, Option<String>),
    photos: Vec<(u32, ImageKind, usize)>,
    data: Vec<u8>,
) -> Result<Response, ApiError> {
    let mut blobs = Vec::new();
    let mut scan_photos = Vec::with_capacity(photos.len());
    for (position, (index, kind, len)) in photos.into_iter().enumerate() {
        blobs.extend(blobs_for(&keys::scan_image_prefix(position), len));
        scan_photos.push(ScanPhoto::new(index, kind, len));
    }
    let create = CreateJob {
        job_id,
        pipeline: Pipeline::AiScan,
        total_count: scan_photos.len() as u64,
        work: Work::Scan(ScanWork {
            photos: scan_photos,
        }),
        blobs,
        idempotency,
    };
    create_job(ctx, create, data).await
}

/// Sends a creation to the job's object, with its inputs stored under the given blobs. The
/// body is streamed a slice at a time from `data`, so that no second copy of a large upload
/// is made, here or in the runtime.
async fn create_job(ctx: &Ctx<'_>, create: CreateJob, data: Vec<u8>) -> Result<Response, ApiError> {
    debug_assert_eq!(
        create.blobs.iter().map(|b| b.len).sum::<usize>(),
        data.len()
    );
    let header = internal::header_frame(&create);
    let slices = data.len().div_ceil(keys::SLICE_BYTES);
    let chunks = std::iter::once(Uint8Array::from(header.as_slice()))
        .chain((0..slices).map(move |n| {
            let start = n * keys::SLICE_BYTES;
            let end = (start + keys::SLICE_BYTES).min(data.len());
            Uint8Array::from(&data[start..end])
        }))
        .map(|chunk| Ok(JsValue::from(chunk)));
    let body = ReadableStream::from_stream(futures::stream::iter(chunks)).into_raw();
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let request = Request::new_with_init("https://job.internal/internal/create", &init)
        .map_err(|e| http::internal("building a create request", e))?;
    stub_for(ctx.env, &create.job_id)?
        .fetch_with_request(request)
        .await
        .map_err(|e| http::internal("creating the job", e))
}

/// Names the slices a pipeline input is stored in.
fn blobs_for(prefix: &str, len: usize) -> Vec<Blob> {
    keys::slices(prefix, len)
        .into_iter()
        .map(|(key, range)| Blob {
            key,
            len: range.len(),
        })
        .collect()
}
