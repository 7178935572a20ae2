//! A writer for the Prometheus text exposition format (version 0.0.4):
//! `# HELP` and `# TYPE` lines per family, then samples with escaped label
//! values.

use std::fmt::Write;

/// The HTTP content type of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets when the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

/// Builds one exposition.
#[derive(Debug, Default)]
pub struct TextWriter {
    out: String,
}

impl TextWriter {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its HELP and TYPE lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&format_value(value));
        self.out.push('\n');
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// HELP text escaping: `\` and newline.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label value escaping: `\`, `"` and newline.
fn escape_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Integers print without a fraction; non-finite values use the format's
/// spellings.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A `u64` counter as a sample value (exact below 2^53).
pub fn count(n: u64) -> f64 {
    n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples() {
        let mut w = TextWriter::new();
        w.family(
            "relay_node_x_total",
            Kind::Counter,
            "Things.\nMore \\ text.",
        );
        w.sample("relay_node_x_total", &[("path", "direct")], 3.0);
        w.sample(
            "relay_node_x_total",
            &[("path", "rel\"ay\\ed\n"), ("peer", "p")],
            0.25,
        );
        w.single("relay_node_up", Kind::Gauge, "Up.", 1.0);
        assert_eq!(
            w.finish(),
            "# HELP relay_node_x_total Things.\\nMore \\\\ text.\n\
             # TYPE relay_node_x_total counter\n\
             relay_node_x_total{path=\"direct\"} 3\n\
             relay_node_x_total{path=\"rel\\\"ay\\\\ed\\n\",peer=\"p\"} 0.25\n\
             # HELP relay_node_up Up.\n\
             # TYPE relay_node_up gauge\n\
             relay_node_up 1\n"
        );
    }

    #[test]
    fn values() {
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-2.0), "-2");
        assert_eq!(format_value(0.001234), "0.001234");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(1e20), "100000000000000000000");
        assert_eq!(format_value(count(u64::MAX)), "18446744073709552000");
    }
}
