//! TCP probe: can a connection be opened?

use std::time::Instant;

use serde_json::json;

use super::{Finding, ms};
use crate::config::checks::TcpProbe;

pub(super) async fn probe(p: &TcpProbe) -> Result<Finding, super::ProbeError> {
    let start = Instant::now();
    match tokio::net::TcpStream::connect(&p.address).await {
        Ok(_) => {
            let took = start.elapsed();
            Ok(Finding::new(
                true,
                format!("connected to {} in {}", p.address, ms(took)),
                json!({ "connect_ms": took.as_millis() as u64 }),
            ))
        }
        Err(e) => Err(super::ProbeError::connecting(
            &e,
            format!("cannot connect to {}: {e}", p.address),
        )),
    }
}
