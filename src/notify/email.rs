//! Email channel: one plain-text message over SMTP (STARTTLS by default).
//!
//! SMTP cannot tell a repeated delivery apart, so an interrupted send is not retried after a
//! crash (see `dispatch::recover`).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{Message, SendError};
use crate::config::notify::{EmailChannel, EmailTls};

fn subject(m: &Message) -> String {
    let text = m.text();
    let first = text.lines().next().unwrap_or("runbook");
    format!("[runbook] {first}")
}

pub(super) async fn send(c: &EmailChannel, m: &Message) -> Result<String, SendError> {
    let bad = SendError::Misconfigured;
    let mut mail = lettre::Message::builder()
        .from(c.from.parse().map_err(|e| bad(format!("from `{}`: {e}", c.from)))?)
        .subject(subject(m))
        .header(ContentType::TEXT_PLAIN);
    for to in &c.to {
        mail = mail.to(to.parse().map_err(|e| bad(format!("to `{to}`: {e}")))?);
    }
    let mail = mail
        .body(m.text())
        .map_err(|e| bad(format!("cannot build the email: {e}")))?;
    let builder = match c.tls {
        EmailTls::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host).map_err(|e| bad(e.to_string()))?
        }
        EmailTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host).map_err(|e| bad(e.to_string()))?,
        EmailTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host),
    };
    let mut builder = builder.port(c.port).timeout(Some(Duration::from_secs(10)));
    if let Some(ca) = &c.ca_file {
        let pem = std::fs::read(ca).map_err(|e| bad(format!("cannot read ca_file {}: {e}", ca.display())))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| bad(format!("ca_file {}: {e}", ca.display())))?;
        let params = TlsParameters::builder(c.host.clone())
            .add_root_certificate(cert)
            .build_rustls()
            .map_err(|e| bad(format!("TLS settings for {}: {e}", c.host)))?;
        builder = builder.tls(match c.tls {
            EmailTls::Starttls => Tls::Required(params),
            EmailTls::Tls => Tls::Wrapper(params),
            EmailTls::None => Tls::None,
        });
    }
    if let (Some(user), Some(pass)) = (&c.username, &c.password) {
        builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
    }
    let response = builder.build().send(mail).await.map_err(|e| {
        let detail = format!("SMTP {}:{}: {e}", c.host, c.port);
        // A 5xx reply is the server's final no; anything else (a 4xx, no answer) may pass.
        if e.is_permanent() {
            SendError::Refused { detail, retry: false }
        } else if e.is_transient() {
            SendError::Refused { detail, retry: true }
        } else {
            SendError::Unreachable(detail)
        }
    })?;
    Ok(format!("SMTP {}", response.code()))
}
