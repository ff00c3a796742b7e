//! humantime strings ("5s", "500ms", "1m 30s") for `Duration` fields of every config
//! section, the agent's and the controller's.

/// `#[serde(with = "humantime_duration")]` on a `Duration`.
pub mod humantime_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?}: {e} (write e.g. \"5s\" or \"500ms\")"
            ))
        })
    }

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }
}

/// `#[serde(default, with = "humantime_opt")]` on an `Option<Duration>`.
pub mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::humantime_duration::deserialize(d).map(Some)
    }

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => super::humantime_duration::serialize(v, s),
            None => s.serialize_none(),
        }
    }
}
