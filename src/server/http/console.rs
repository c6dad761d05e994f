//! The web console's page and assets, embedded in the binary at build time
//! (from `assets/console/`): no CDN, works offline.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::Embed;

use super::{error, App};

#[derive(Embed)]
#[folder = "assets/console/"]
struct Assets;

/// What the console's pages may load and run: their own files only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The console, for the admin.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/", get(|| async { page("index.html") }))
}

/// Static assets: no secrets, and the login page needs them.
pub(crate) fn public_routes() -> Router<Arc<App>> {
    Router::new().route("/assets/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    page(&file)
}

/// An embedded file, with its type and the console's security headers.
pub(crate) fn page(file: &str) -> Response {
    let Some(content) = Assets::get(file) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no asset {file}"),
        );
    };
    let mime = match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    let mut response = content.data.into_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
