//! Our own control answers that our CLI reads (`/api/v2/federation/*`), each one type
//! written by the server and read by the CLI, so a missing field is an error, not a 0.

use miniserde::json::{Number, Object, Value};

use super::ark::InstanceInfo;
use super::fields::{Fields, WireError};

/// `GET /api/v2/federation/status`: the instance info, flat, with the server's state.
#[derive(Debug, Clone)]
pub struct LatticeStatus {
    pub info: InstanceInfo,
    /// The federation endpoints are on (`start`/`stop`).
    pub enabled: bool,
    /// A server is listening.
    pub running: bool,
    pub started_at: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// `GET /api/v2/federation/peers`, as is.
    pub peer_list: Object,
    pub clock_warning: Option<String>,
    /// Records held back, by reason (`untrusted_author`, `clock_ahead`,
    /// `held_table_full`): see `sync::held`.
    pub held: Vec<(String, u64)>,
    /// What is held and what to run, one line per cause.
    pub held_messages: Vec<String>,
}

impl LatticeStatus {
    pub fn to_json(&self) -> Value {
        let Value::Object(mut object) = self.info.to_json() else {
            unreachable!("the info is an object")
        };
        let number = |n: u64| Value::Number(Number::U64(n));
        object.insert("enabled".into(), Value::Bool(self.enabled));
        object.insert("running".into(), Value::Bool(self.running));
        object.insert("startedAt".into(), number(self.started_at));
        object.insert("bytesSent".into(), number(self.bytes_sent));
        object.insert("bytesReceived".into(), number(self.bytes_received));
        object.insert("peerList".into(), Value::Object(self.peer_list.clone()));
        if let Some(warning) = &self.clock_warning {
            object.insert("clockWarning".into(), Value::String(warning.clone()));
        }
        let held: Object = self
            .held
            .iter()
            .map(|(reason, count)| (reason.clone(), number(*count)))
            .collect();
        object.insert("held".into(), Value::Object(held));
        if !self.held_messages.is_empty() {
            let messages = self.held_messages.iter().cloned().map(Value::String);
            object.insert("heldMessages".into(), Value::Array(messages.collect()));
        }
        Value::Object(object)
    }

    pub fn from_json(status: &Object, context: &str) -> Result<LatticeStatus, WireError> {
        let fields = Fields::new(status, context);
        let required_bool = |name: &str| {
            fields
                .opt_bool(name)?
                .ok_or_else(|| WireError(format!("{context}: field `{name}` is missing")))
        };
        Ok(LatticeStatus {
            info: InstanceInfo::from_json(status, context)?,
            enabled: required_bool("enabled")?,
            running: required_bool("running")?,
            started_at: fields.u64("startedAt")?,
            bytes_sent: fields.u64("bytesSent")?,
            bytes_received: fields.u64("bytesReceived")?,
            peer_list: match fields.get("peerList") {
                Some(Value::Object(list)) => list.clone(),
                _ => return Err(WireError(format!("{context}: field `peerList` is missing"))),
            },
            clock_warning: fields.opt_str("clockWarning")?.map(str::to_owned),
            held: match fields.get("held") {
                Some(Value::Object(held)) => held
                    .iter()
                    .filter_map(|(reason, count)| match count {
                        Value::Number(Number::U64(count)) => Some((reason.clone(), *count)),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            held_messages: fields
                .opt_array("heldMessages")?
                .unwrap_or_default()
                .iter()
                .filter_map(|message| match message {
                    Value::String(message) => Some(message.clone()),
                    _ => None,
                })
                .collect(),
        })
    }
}
