//! A tool call's arguments, read against the tool's schema: known names only, typed values,
//! bounded sizes.
//!
//! Invariant: nothing a tool does sees an argument that did not pass here, so an oversized
//! or misspelt argument is a protocol error the caller is told of, never a truncated value.

use serde_json::{Map, Value};

use super::tools::{MAX_ARGV, MAX_COMMAND, MAX_TEXT, ToolDef};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadArgs(pub String);

pub struct Args<'a>(&'a Map<String, Value>);

impl<'a> Args<'a> {
    /// Checks every name against the tool's schema and every required one is there.
    pub fn new(tool: &ToolDef, given: &'a Map<String, Value>) -> Result<Self, BadArgs> {
        let known = (tool.properties)();
        for name in given.keys() {
            if known.get(name).is_none() {
                let names: Vec<&String> = known.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                return Err(BadArgs(format!(
                    "`{}` takes no argument `{}` (arguments: {})",
                    tool.name,
                    crate::util::escape_controls(&name.chars().take(64).collect::<String>()),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
                    }
                )));
            }
        }
        for r in tool.required {
            if given.get(*r).is_none_or(Value::is_null) {
                return Err(BadArgs(format!("`{}` needs the argument `{r}`", tool.name)));
            }
        }
        Ok(Args(given))
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn text(&self, name: &str) -> Result<Option<&'a str>, BadArgs> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.len() <= MAX_TEXT && !s.contains('\0') => Ok(Some(s)),
            Some(Value::String(s)) if s.contains('\0') => Err(BadArgs(format!("`{name}` holds a NUL byte"))),
            Some(Value::String(s)) => Err(BadArgs(format!("`{name}` is {} bytes; at most {MAX_TEXT}", s.len()))),
            Some(v) => Err(BadArgs(format!("`{name}` must be a string, not {}", kind(v)))),
        }
    }

    pub fn required_text(&self, name: &str) -> Result<&'a str, BadArgs> {
        self.text(name)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| BadArgs(format!("`{name}` must not be empty")))
    }

    pub fn count(&self, name: &str) -> Result<Option<u64>, BadArgs> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v >= 1 => Ok(Some(v)),
                _ => Err(BadArgs(format!(
                    "`{name}` must be a whole number of at least 1, not {n}"
                ))),
            },
            Some(v) => Err(BadArgs(format!("`{name}` must be a number, not {}", kind(v)))),
        }
    }

    /// A row id: a whole number from 1 to i64::MAX.
    pub fn id(&self, name: &str) -> Result<Option<i64>, BadArgs> {
        self.count(name)?
            .map(|v| i64::try_from(v).map_err(|_| BadArgs(format!("`{name}` is too large"))))
            .transpose()
    }

    /// A list of strings: each at most MAX_TEXT bytes, at most MAX_ARGV of them, no NUL.
    pub fn words(&self, name: &str) -> Result<Option<Vec<String>>, BadArgs> {
        let Some(v) = self.get(name) else { return Ok(None) };
        let Value::Array(items) = v else {
            return Err(BadArgs(format!(
                "`{name}` must be a list of strings (an argv), not {}",
                kind(v)
            )));
        };
        if items.len() > MAX_ARGV {
            return Err(BadArgs(format!(
                "`{name}` has {} words; at most {MAX_ARGV}",
                items.len()
            )));
        }
        let mut out = Vec::with_capacity(items.len());
        let mut total = 0;
        for item in items {
            let Value::String(s) = item else {
                return Err(BadArgs(format!("`{name}` must hold strings only, not {}", kind(item))));
            };
            if s.contains('\0') {
                return Err(BadArgs(format!("`{name}` holds a NUL byte")));
            }
            total += s.len();
            if s.len() > MAX_TEXT || total > MAX_COMMAND {
                return Err(BadArgs(format!(
                    "`{name}` is too long: at most {MAX_TEXT} bytes a word and {MAX_COMMAND} in all"
                )));
            }
            out.push(s.clone());
        }
        Ok(Some(out))
    }

    /// A command: a non-empty argv.
    pub fn command(&self, name: &str) -> Result<Vec<String>, BadArgs> {
        self.words(name)?
            .filter(|a| !a.is_empty() && !a[0].is_empty())
            .ok_or_else(|| BadArgs(format!("`{name}` must name a program: [\"df\", \"-h\"]")))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
