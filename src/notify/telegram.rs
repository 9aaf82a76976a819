//! Telegram channel: Bot API `sendMessage`, HTML-escaped, split at 4096 characters.

use super::{Message, client};
use crate::config::notify::TelegramChannel;

/// Telegram's limit on one message's text.
const MAX_TEXT: usize = 4096;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Splits escaped text into pieces of at most `MAX_TEXT` characters, at line ends when it can,
/// never inside an HTML entity.
fn split(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        let mut line = line;
        while current.chars().count() + line.chars().count() > MAX_TEXT {
            if !current.is_empty() {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            // One line longer than the limit: cut it, backing off to the start of an entity.
            let mut cut = line.char_indices().nth(MAX_TEXT).map(|(i, _)| i).unwrap_or(line.len());
            if let Some(amp) = line[..cut].rfind('&')
                && !line[amp..cut].contains(';')
            {
                cut = amp;
            }
            parts.push(line[..cut].to_string());
            line = &line[cut..];
        }
        current.push_str(line);
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
}

pub(super) async fn send(c: &TelegramChannel, m: &Message) -> Result<String, super::SendError> {
    let url = format!("{}/bot{}/sendMessage", c.api_url, c.bot_token);
    let text = escape(&m.text());
    let pieces = split(&text);
    let count = pieces.len();
    for piece in pieces {
        let mut body = serde_json::json!({
            "chat_id": c.chat_id,
            "text": piece,
            "parse_mode": "HTML",
            "disable_web_page_preview": true,
        });
        // The test route sends everything to one chat, without topic threading.
        if let (Some(topic), false) = (c.topic_id, m.test_route) {
            body["message_thread_id"] = topic.into();
        }
        let resp = client().post(&url).json_body(&body).send().await.map_err(|e| {
            super::SendError::Unreachable(format!(
                "telegram sendMessage: {}",
                super::transport_error(&e.without_url())
            ))
        })?;
        let status = resp.status();
        let reply: serde_json::Value = resp.json_value().await.unwrap_or_default();
        if !status.is_success() || reply["ok"] != true {
            let why = reply["description"].as_str().unwrap_or("no description");
            return Err(super::refused(
                status,
                format!("telegram sendMessage: HTTP {status}: {why}"),
            ));
        }
    }
    Ok(format!("telegram: {count} message(s) sent"))
}

/// Small helpers so the JSON body and reply work without reqwest's `json` feature.
trait JsonBody {
    fn json_body(self, value: &serde_json::Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, value: &serde_json::Value) -> Self {
        self.header("content-type", "application/json").body(value.to_string())
    }
}

trait JsonReply {
    async fn json_value(self) -> Result<serde_json::Value, String>;
}

impl JsonReply for reqwest::Response {
    async fn json_value(self) -> Result<serde_json::Value, String> {
        let bytes = self.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_split_under_the_limit_without_breaking_entities() {
        let text = escape(&"a<b & c>\n".repeat(1000));
        let parts = split(&text);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_TEXT));
        assert_eq!(parts.concat(), text);
        let one_line = escape(&"<".repeat(5000));
        let parts = split(&one_line);
        assert!(
            parts
                .iter()
                .all(|p| p.chars().count() <= MAX_TEXT && !p.ends_with('&') && !p.ends_with("&lt"))
        );
        assert_eq!(parts.concat(), one_line);
    }
}
