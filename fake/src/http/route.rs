//! Which call a request is, from its method and path: the OAuth endpoints and the private link API.

use crate::config::FakeOp;
use http::Method;

pub(super) const PREFIX: &str = "/api/atlas/v2/groups/";

pub(super) enum Route {
    Token,
    Revoke,
    Api {
        op: FakeOp,
        group: String,
        id: Option<String>,
    },
    MethodNotAllowed(&'static str),
    NotFound,
}

pub(super) fn route(method: &Method, path: &str) -> Route {
    match path {
        "/api/oauth/token" => {
            return if method == Method::POST {
                Route::Token
            } else {
                Route::MethodNotAllowed("token")
            };
        }
        "/api/oauth/revoke" => {
            return if method == Method::POST {
                Route::Revoke
            } else {
                Route::MethodNotAllowed("revoke")
            };
        }
        _ => {}
    }
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Route::NotFound;
    };
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [group, "streams", "privateLinkConnections"] => {
            let op = match *method {
                Method::GET => FakeOp::List,
                Method::POST => FakeOp::Create,
                _ => return Route::MethodNotAllowed("other"),
            };
            Route::Api {
                op,
                group: (*group).to_owned(),
                id: None,
            }
        }
        [group, "streams", "privateLinkConnections", id] => {
            let op = match *method {
                Method::GET => FakeOp::Get,
                Method::DELETE => FakeOp::Delete,
                Method::PATCH => FakeOp::Update,
                _ => return Route::MethodNotAllowed("other"),
            };
            Route::Api {
                op,
                group: (*group).to_owned(),
                id: Some((*id).to_owned()),
            }
        }
        _ => Route::NotFound,
    }
}
