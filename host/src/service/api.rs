//! The HTTP API (axum): submit, read, list, stream and cancel jobs, health, metrics and the
//! OpenAPI document generated from these handlers ([`ApiDoc`]).
//!
//! Every `/v1` request names its tenant by its bearer token; a job is looked up under the
//! token's tenant only, so another tenant's job is "not found", exactly like one that does not
//! exist. A refused request changes nothing and gets a JSON error body with the status that
//! says why: 400 malformed, 401 no or bad token, 403 not allowed to this tenant, 404 unknown
//! job, 409 its site or server is in use by an unfinished job, 413 body too large, 429 over quota.

use super::Service;
use super::config::{BUNDLED, PathRefusal, Tenant, resolve_data_dir, sha256_hex};
use super::queue::job_key;
use super::record::{JobRecord, JobRequest, JobState, is_job_id, new_job_id};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Serialize;
use std::convert::Infallible;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use utoipa::{Modify, OpenApi, ToSchema};

pub fn router(service: Arc<Service>) -> Router {
    let limit = service.config.max_body_bytes;
    Router::new()
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/jobs/{id}/events", get(events))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(service.clone(), count_refusals))
        .with_state(service)
}

/// Counts every refusal (a status of 400 or more) on its way out, whichever handler, extractor
/// or fallback made it.
async fn count_refusals(State(service): State<Arc<Service>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status().is_client_error() || response.status().is_server_error() {
        service.metrics.refused(response.status().as_u16());
    }
    response
}

/// The body of every refusal.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status, repeated.
    pub status: u16,
    /// `bad-request`, `unauthorized`, `forbidden`, `not-found`, `conflict`,
    /// `payload-too-large`, `too-many-requests` or `unavailable`.
    pub code: String,
    pub message: String,
}

/// A refused request.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
    fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, m)
    }
    fn forbidden(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, m)
    }
    fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "no such job")
    }
    fn unavailable(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the queue cannot be reached: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.status {
            StatusCode::BAD_REQUEST => "bad-request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
            StatusCode::TOO_MANY_REQUESTS => "too-many-requests",
            _ => "unavailable",
        };
        let body =
            ErrorBody { error: ErrorDetail { status: self.status.as_u16(), code: code.into(), message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The tenant the request's bearer token belongs to.
fn tenant<'a>(service: &'a Service, headers: &HeaderMap) -> Result<&'a Tenant, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "an API token is required: Authorization: Bearer TOKEN")
        })?;
    service
        .config
        .tenant_for_token(token.trim())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "the API token is not valid"))
}

/// Submit a job.
#[utoipa::path(post, path = "/v1/jobs", request_body = JobRequest, security(("token" = [])),
    responses(
        (status = 202, description = "Queued", body = JobRecord),
        (status = 400, description = "Malformed request or unusable data dir", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "A data dir, server or component this tenant may not use", body = ErrorBody),
        (status = 409, description = "An unfinished job uses this site (top directory of the data dir) or server", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Over the tenant's submissions per hour", body = ErrorBody),
    ))]
async fn submit(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Json<JobRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<JobRecord>), ApiError> {
    let tenant = tenant(&service, &headers)?;
    let Json(request) = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large"),
        _ => ApiError::bad_request(e.body_text()),
    })?;
    if !tenant.servers.contains(&request.server) {
        return Err(ApiError::forbidden(format!("server {:?} is not one this tenant may use", request.server)));
    }
    let component = request.component.as_deref().unwrap_or(BUNDLED).to_ascii_lowercase();
    if !tenant.components.contains(&component) {
        return Err(ApiError::forbidden(format!("component {component:?} is not one this tenant may run")));
    }
    let component_sha256 = if component == BUNDLED { service.bundled_sha256.clone() } else { component };
    let data_dir = resolve_data_dir(&tenant.data_root, &request.data_dir).map_err(|e| match e {
        PathRefusal::Outside(m) => ApiError::forbidden(m),
        PathRefusal::Unusable(m) => ApiError::bad_request(m),
    })?;
    let id = new_job_id().map_err(ApiError::unavailable)?;
    let key = job_key(&tenant.name, &id);
    // One unfinished job per site (the data dir's top directory under the root, so `site` and
    // `site/.blocklet-server` are one) and per server (a Blocklet component plans the same
    // database names for every site).
    let top = data_dir.strip_prefix(&tenant.data_root).ok().and_then(|r| r.components().next());
    let site = top.map_or(tenant.data_root.clone(), |top| tenant.data_root.join(top));
    let reservations = vec![
        format!("dir-{}", &sha256_hex(site.as_os_str().as_bytes())[..40]),
        format!("server-{}", &sha256_hex(request.server.as_bytes())[..40]),
    ];
    let queue = &service.queue;
    for (i, reservation) in reservations.iter().enumerate() {
        if let Err(holder) = queue.reserve(reservation, &key).await.map_err(ApiError::unavailable)? {
            let _ = queue.release(&reservations[..i], &key).await;
            let what = if i == 0 {
                format!("data dir {:?}", request.data_dir)
            } else {
                format!("server {:?}", request.server)
            };
            let by = match holder.split_once('.') {
                Some((t, id)) if t == tenant.name => format!("job {id}"),
                _ => "another job".into(),
            };
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("{what} is in use by {by}, which has not finished"),
            ));
        }
    }
    let within_quota = queue.count_submission(&tenant.name, tenant.submits_per_hour).await;
    if !matches!(within_quota, Ok(true)) {
        let _ = queue.release(&reservations, &key).await;
        return Err(match within_quota {
            Ok(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("this tenant may submit {} jobs per hour; try again next hour", tenant.submits_per_hour),
            ),
            Err(e) => ApiError::unavailable(e),
        });
    }
    let record = JobRecord {
        id,
        tenant: tenant.name.clone(),
        state: JobState::Queued,
        data_dir: data_dir.display().to_string(),
        component_sha256,
        request,
        submitted_at: crate::job::report::now(),
        started_at: None,
        finished_at: None,
        attempts: 0,
        worker: None,
        cancel_requested: false,
        may_have_committed: false,
        exit_code: None,
        outcome: None,
        error: None,
        rows_migrated: 0,
        report: None,
        reservations: reservations.clone(),
    };
    if let Err(e) = queue.submit(&record).await {
        let _ = queue.release(&reservations, &key).await;
        return Err(ApiError::unavailable(e));
    }
    service.metrics.submitted.fetch_add(1, Ordering::Relaxed);
    Ok((StatusCode::ACCEPTED, Json(record)))
}

/// The tenant's job `id`.
async fn find(service: &Service, headers: &HeaderMap, id: &str) -> Result<(String, JobRecord), ApiError> {
    let tenant = tenant(service, headers)?;
    if !is_job_id(id) {
        return Err(ApiError::not_found());
    }
    let key = job_key(&tenant.name, id);
    match service.queue.record(&key).await.map_err(ApiError::unavailable)? {
        Some((record, _)) => Ok((key, record)),
        None => Err(ApiError::not_found()),
    }
}

/// A job: its state, timings and, once it ended, its report.
#[utoipa::path(get, path = "/v1/jobs/{id}", security(("token" = [])), params(("id" = String, Path)),
    responses((status = 200, body = JobRecord), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn job(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    find(&service, &headers, &id).await.map(|(_, r)| Json(r))
}

/// The tenant's jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", security(("token" = [])),
    responses((status = 200, body = Vec<JobRecord>), (status = 401, body = ErrorBody)))]
async fn list(State(service): State<Arc<Service>>, headers: HeaderMap) -> Result<Json<Vec<JobRecord>>, ApiError> {
    let tenant = tenant(&service, &headers)?;
    service.queue.list(&tenant.name).await.map(Json).map_err(ApiError::unavailable)
}

/// Cancel a job: a queued one ends at once; a running one stops at its next step, ends its
/// server-side work and removes what it created.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", security(("token" = [])), params(("id" = String, Path)),
    responses((status = 202, body = JobRecord), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The job has already ended", body = ErrorBody)))]
async fn cancel(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobRecord>), ApiError> {
    let (key, _) = find(&service, &headers, &id).await?;
    let changed = service
        .queue
        .update(&key, |r| {
            if r.state.is_final() {
                return Err(format!("the job has already ended ({})", r.state.label()));
            }
            let was = r.state;
            if was == JobState::Queued {
                r.state = JobState::Cancelled;
                r.outcome = Some("cancelled".into());
                r.finished_at = Some(crate::job::report::now());
            }
            r.cancel_requested = true;
            Ok(was)
        })
        .await
        .map_err(ApiError::unavailable)?;
    let (record, was) = match changed {
        None => return Err(ApiError::not_found()),
        Some(Err(ended)) => return Err(ApiError::new(StatusCode::CONFLICT, ended)),
        Some(Ok(changed)) => changed,
    };
    if was == JobState::Queued {
        let _ = service.queue.release(&record.reservations, &key).await;
        service.metrics.job_settled(JobState::Cancelled);
        super::worker::publish_state(&service, &record.id, "job-finished", JobState::Cancelled).await;
    } else {
        let _ = service.queue.client.publish(service.queue.cancel_subject(&record.id), "cancel".into()).await;
        let _ = service.queue.client.flush().await;
    }
    Ok((StatusCode::ACCEPTED, Json(record)))
}

/// Server-sent events: first `state` (the job record), then the job's progress events as the
/// CLI's `--progress-events` writes them (`component-ready`, `database-started`,
/// `table-started`, `rows`, `table-loaded`, `database-finished`, `first-row`), and last
/// `job-finished` with the final state; `job-handed-back` when a draining worker returns it.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", security(("token" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn events(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (key, _) = find(&service, &headers, &id).await?;
    // Subscribe first, then read the record: an end between the two is not missed.
    let subscription =
        service.queue.client.subscribe(service.queue.progress_subject(&id)).await.map_err(ApiError::unavailable)?;
    let (record, _) =
        service.queue.record(&key).await.map_err(ApiError::unavailable)?.ok_or_else(ApiError::not_found)?;
    let first = Event::default().event("state").data(serde_json::to_string(&record).unwrap_or_default());
    let ended = record.state.is_final();
    // The job's events until `job-finished`, then the stream ends.
    let live = futures_util::stream::unfold((subscription, ended), |(mut subscription, done)| async move {
        if done {
            return None;
        }
        let message = subscription.next().await?;
        let payload = String::from_utf8_lossy(&message.payload).to_string();
        let name = serde_json::from_str::<serde_json::Value>(&payload)
            .ok()
            .and_then(|v| v["event"].as_str().map(String::from))
            .unwrap_or_else(|| "message".into());
        let done = name == "job-finished";
        Some((Ok::<_, Infallible>(Event::default().event(name).data(payload)), (subscription, done)))
    });
    let stream = futures_util::stream::once(std::future::ready(Ok::<_, Infallible>(first))).chain(live);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the queue answers.
    pub status: String,
    /// This process's worker name (`serve --worker-name`).
    pub worker: String,
    /// Jobs waiting in the shared queue.
    pub queue_waiting: u64,
}

/// Whether this process and its queue are up (no token needed; for load balancers).
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn health(State(service): State<Arc<Service>>) -> Result<Json<Health>, ApiError> {
    let (waiting, _) = service.queue.depth().await.map_err(ApiError::unavailable)?;
    Ok(Json(Health { status: "ok".into(), worker: service.worker_name.clone(), queue_waiting: waiting }))
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
async fn metrics(State(service): State<Arc<Service>>) -> Response {
    let depth = service.queue.depth().await.ok();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], service.metrics.render(depth)).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

async fn unknown_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route; the API is listed at /openapi.json")
}

/// The API's OpenAPI document, generated from the handlers and types above.
#[derive(OpenApi)]
#[openapi(
    info(title = "blocklet-migrate service", description = "Tenants' Blocklet Server migrations as jobs on a shared queue; see docs/hosting.md."),
    paths(submit, list, job, cancel, events, health, metrics, openapi),
    components(schemas(JobRequest, JobRecord, ErrorBody, ErrorDetail, Health)),
    modifiers(&BearerToken)
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document as served and as checked in at `docs/openapi.json`.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.to_pretty_json().unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_checked_in_openapi_document_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == super::openapi_json(),
            "docs/openapi.json is not what the code generates: run `blocklet-migrate serve --print-openapi > docs/openapi.json`"
        );
    }
}
