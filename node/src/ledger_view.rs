//! Text tables for `relay-node members`, `relay-node ledger` and
//! `relay-node ledger verify`, rendered from the local API's JSON
//! (docs/LOCAL_API.md).

use serde_json::Value;

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell, two spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The members table of a `GET /v1/members` answer.
pub fn members_table(answer: &Value) -> String {
    let list = answer["members"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "members none\n".into();
    }
    let mut rows = vec![[
        "NODE_ID",
        "CONNECTED",
        "NAT",
        "RELAY",
        "LAST_SEEN",
        "VERSION",
        "ADDRS",
    ]
    .map(String::from)
    .to_vec()];
    for m in &list {
        let addrs: Vec<String> = m["addrs"]
            .as_array()
            .map(|a| a.iter().map(cell).collect())
            .unwrap_or_default();
        rows.push(vec![
            cell(&m["node_id"]),
            if m["connected"] == true { "yes" } else { "no" }.into(),
            cell(&m["nat"]),
            if m["relay"] == true { "yes" } else { "no" }.into(),
            cell(&m["last_seen"]),
            cell(&m["version"]),
            if addrs.is_empty() {
                "-".into()
            } else {
                addrs.join(",")
            },
        ]);
    }
    table(&rows)
}

/// The header of the entries table.
pub fn entries_header() -> Vec<String> {
    ["CURSOR", "ORIGIN", "SEQ", "KIND", "TS", "BODY"]
        .map(String::from)
        .to_vec()
}

/// One row of the entries table for one entry object.
pub fn entry_row(e: &Value) -> Vec<String> {
    let origin = cell(&e["origin"]);
    vec![
        cell(&e["cursor"]),
        origin.get(..10).unwrap_or(&origin).to_string(),
        cell(&e["seq"]),
        cell(&e["kind"]),
        cell(&e["ts"]),
        cell(&e["body"]),
    ]
}

/// The report of `GET /v1/ledger/verify`, as text.
pub fn verify_text(r: &Value) -> String {
    let mut out = format!(
        "{}: {} entries of {} origins checked\n",
        if r["ok"] == true { "ok" } else { "PROBLEM" },
        cell(&r["entries"]),
        cell(&r["origins"]),
    );
    for (key, what) in [
        ("bad_signatures", "bad signature"),
        ("broken_links", "broken link"),
    ] {
        for p in r[key].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "{what}: {} seq {}\n",
                cell(&p["origin"]),
                cell(&p["seq"])
            ));
        }
    }
    for f in r["forks"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "fork: {} at seqs {}\n",
            cell(&f["origin"]),
            cell(&f["seqs"])
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_and_entries_render_as_aligned_tables() {
        let t = members_table(&json!({"members": [
            {"node_id": "aaaa", "addrs": ["127.0.0.1:1", "10.0.0.1:2"], "nat": "cone",
             "relay": false, "version": "0.1.0", "last_seen": "2026-01-01T00:00:00Z",
             "connected": true}
        ]}));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NODE_ID  CONNECTED"));
        assert!(lines[1].contains("127.0.0.1:1,10.0.0.1:2"));
        assert!(lines[1].contains(" yes "));
        assert_eq!(members_table(&json!({"members": []})), "members none\n");

        let row = entry_row(
            &json!({"cursor": "7", "origin": "abcdefghijklmnop", "seq": 2,
            "kind": "node-announcement", "ts": "t", "body": {"nat": "open"}}),
        );
        assert_eq!(row[1], "abcdefghij");
        assert_eq!(row[5], r#"{"nat":"open"}"#);
    }

    #[test]
    fn verify_names_each_problem() {
        let text = verify_text(&json!({"ok": false, "entries": 3, "origins": 1,
            "bad_signatures": [{"origin": "o", "seq": 2}], "broken_links": [],
            "forks": [{"origin": "o", "seqs": [3]}]}));
        assert!(text.starts_with("PROBLEM: 3 entries of 1 origins"));
        assert!(text.contains("bad signature: o seq 2"));
        assert!(text.contains("fork: o at seqs [3]"));
    }
}
