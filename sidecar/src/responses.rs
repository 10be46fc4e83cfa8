//! The answers the proxy gives by itself, without an upstream: an empty body, and plain-text
//! 400 and 502 responses. A leaf the proxy and the relay share.

use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty};

use crate::relay_body::{Body, full};

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub(crate) fn bad_request(msg: &str) -> Response<Body> {
    let mut resp = Response::new(full(format!("{msg}\n")));
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    resp
}

pub(crate) fn bad_gateway(msg: String) -> Response<Body> {
    let mut resp = Response::new(full(format!("{msg}\n")));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}
