//! The document of operations of HVR's own product (licences, metering, agents, hub server
//! restart) that sluice answers with a clear error.

use utoipa::openapi::path::HttpMethod;

use super::{Auth, Doc, Face, Op};
use crate::hvr::product::OPERATIONS;

pub(super) fn document(doc: &mut Doc) {
    for (method, path, why) in OPERATIONS {
        let method = match *method {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            _ => HttpMethod::Delete,
        };
        doc.add(
            Op::new(
                method,
                &format!("/api/latest{path}"),
                "not in sluice",
                Auth::Bearer("ReadOnly"),
                "Not in sluice (an operation of HVR's own product)",
            )
            .description(why)
            .errors(Face::Hvr, &[401, 404, 501]),
        );
    }
}
