//! The NAT binding lifetime as `status` and `netcheck` show it: what the
//! transport measured (`binding_lifetime` in both JSON reports) and the
//! keepalive interval that follows from it.

use relay_transport::traversal::{LifetimeReport, LifetimeState};
use serde::{Deserialize, Serialize};

/// `binding_lifetime` in `status --json` and `netcheck --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingLifetimeSection {
    /// "pending" (not measured yet) | "measuring" | "measured" |
    /// "not-needed" (our NAT is open) | "unavailable" (the last attempt
    /// failed, see `error`) | "disabled" | "off" (no traversal).
    pub state: String,
    /// An idle binding lived at least this long, in seconds.
    pub lower_s: Option<f64>,
    /// An idle binding was gone after this long, in seconds (`null`: it
    /// outlived every test, or not measured).
    pub upper_s: Option<f64>,
    /// Keepalive interval on direct paths, in seconds.
    pub keepalive_s: Option<f64>,
    /// Keepalive interval quinn gives new connections, in seconds.
    pub quic_keepalive_s: Option<f64>,
    /// The peer that observed the last (or running) measurement.
    pub observer: Option<String>,
    /// Why the last attempt was unavailable.
    pub error: Option<String>,
    /// Measurements completed since start.
    pub measurements: u64,
}

impl Default for BindingLifetimeSection {
    fn default() -> Self {
        Self {
            state: "off".to_string(),
            lower_s: None,
            upper_s: None,
            keepalive_s: None,
            quic_keepalive_s: None,
            observer: None,
            error: None,
            measurements: 0,
        }
    }
}

fn secs(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

impl BindingLifetimeSection {
    /// From the transport's report and quinn's current keepalive.
    pub fn new(report: &LifetimeReport, quic_keep_alive: std::time::Duration) -> Self {
        Self {
            state: report.state.as_str().to_string(),
            lower_s: report.lower.map(secs),
            upper_s: report.upper.map(secs),
            keepalive_s: Some(secs(report.keepalive)),
            quic_keepalive_s: Some(secs(quic_keep_alive)),
            observer: report.observer.map(|o| o.to_string()),
            error: report.error.clone(),
            measurements: report.measurements,
        }
    }

    /// One line for the status header and `netcheck`.
    pub fn line(&self) -> String {
        let mut line = match (self.state.as_str(), self.lower_s, self.upper_s) {
            ("not-needed", ..) => "not needed (no NAT)".to_string(),
            (state, Some(lower), Some(upper)) => format!("{lower}-{upper}s ({state})"),
            (state, Some(lower), None) => format!(">= {lower}s ({state})"),
            (state, None, _) => state.to_string(),
        };
        if let Some(k) = self.keepalive_s {
            line.push_str(&format!(", keepalive {k}s"));
        }
        if let Some(e) = &self.error {
            line.push_str("; ");
            line.push_str(e);
        }
        line
    }

    /// Whether the report holds a measured lifetime.
    pub fn is_measured(&self) -> bool {
        self.state == LifetimeState::Measured.as_str() || self.lower_s.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_transport::SecretKey;
    use std::time::Duration;

    #[test]
    fn measured_and_other_states() {
        let observer = SecretKey::from_bytes(&[1; 32]).node_id();
        let report = LifetimeReport {
            state: LifetimeState::Measured,
            lower: Some(Duration::from_secs(2)),
            upper: Some(Duration::from_secs(4)),
            keepalive: Duration::from_secs(1),
            observer: Some(observer),
            error: None,
            measurements: 1,
        };
        let s = BindingLifetimeSection::new(&report, Duration::from_secs(1));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["state"], "measured");
        assert_eq!(v["lower_s"], 2.0);
        assert_eq!(v["upper_s"], 4.0);
        assert_eq!(v["keepalive_s"], 1.0);
        assert_eq!(v["quic_keepalive_s"], 1.0);
        assert_eq!(v["observer"], observer.to_string());
        assert_eq!(s.line(), "2-4s (measured), keepalive 1s");
        assert!(s.is_measured());

        let open = BindingLifetimeSection::new(
            &LifetimeReport {
                state: LifetimeState::NotNeeded,
                keepalive: Duration::from_secs(10),
                ..LifetimeReport::default()
            },
            Duration::from_secs(10),
        );
        assert_eq!(open.line(), "not needed (no NAT), keepalive 10s");
        let failed = BindingLifetimeSection::new(
            &LifetimeReport {
                state: LifetimeState::Unavailable,
                keepalive: Duration::from_secs(3),
                error: Some("observer x did not answer a binding check".into()),
                ..LifetimeReport::default()
            },
            Duration::from_secs(5),
        );
        assert_eq!(
            failed.line(),
            "unavailable, keepalive 3s; observer x did not answer a binding check"
        );
        let off = BindingLifetimeSection::default();
        assert_eq!(off.line(), "off");
        let v = serde_json::to_value(&off).unwrap();
        assert!(v["lower_s"].is_null() && v["keepalive_s"].is_null());
        let back: BindingLifetimeSection = serde_json::from_value(v).unwrap();
        assert_eq!(back, off);
    }
}
