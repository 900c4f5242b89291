//! The summary for people: a few header lines and one table per question.

use std::fmt::Write as _;

use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};

use super::{
    report::{Report, Table as ReportTable},
    time::table_time,
};
use crate::printable;

/// Hours the text timeline shows (the most recent ones; `--json` has them all).
pub const TIMELINE_HOURS_SHOWN: usize = 48;

/// The whole summary as text, ending with a newline.
pub fn render_text(report: &Report) -> String {
    let mut text = String::new();
    header(&mut text, report);
    // Lines from several machines: each table says where, and a table per host comes first.
    let several = report.several_hosts();
    if several {
        hosts_table(&mut text, report);
    }
    let with_hosts = |mut header: Vec<&'static str>| {
        if several {
            header.push("hosts");
        }
        header
    };
    let hosts_cell = |row: &mut Vec<String>, hosts: &[String], more: bool| {
        if several {
            row.push(host_list(hosts, more));
        }
    };

    let sources = &report.blocked_sources;
    section(
        &mut text,
        "Top blocked sources (drop, reject)",
        sources,
        "sources",
        report.key_limit,
    );
    if !sources.rows.is_empty() {
        let mut rows: Vec<Vec<String>> = Vec::new();
        for row in sources.rows.iter().chain(&sources.other) {
            let mut ports = join(&row.dest_ports);
            if row.distinct_dest_ports > row.dest_ports.len() as u64 {
                ports.push_str(", …");
            }
            let estimated = if row.dest_ports_estimated { "≈" } else { "" };
            let mut cells = vec![
                row.src_ip.clone(),
                row.attempts.to_string(),
                format!("{estimated}{}", row.distinct_dest_ports),
                ports,
                table_time(row.first_seen),
                table_time(row.last_seen),
            ];
            hosts_cell(&mut cells, &row.hosts, row.more_hosts);
            rows.push(cells);
        }
        let header = with_hosts(vec![
            "source",
            "attempts",
            "distinct ports",
            "ports tried",
            "first seen",
            "last seen",
        ]);
        push_table(&mut text, &header, &[1, 2], rows);
    }

    let destinations = &report.outbound_destinations;
    section(
        &mut text,
        "Top outbound destinations",
        destinations,
        "destinations",
        report.key_limit,
    );
    if !destinations.rows.is_empty() {
        let rows = destinations
            .rows
            .iter()
            .chain(&destinations.other)
            .map(|row| {
                let mut cells = vec![
                    row.destination.clone(),
                    row.connections.to_string(),
                    row.flows.to_string(),
                    human_bytes(row.bytes),
                ];
                hosts_cell(&mut cells, &row.hosts, row.more_hosts);
                cells
            })
            .collect();
        let header = with_hosts(vec!["destination", "connections", "flows", "bytes"]);
        push_table(&mut text, &header, &[1, 2, 3], rows);
    }

    let processes = &report.processes;
    section(
        &mut text,
        "Top processes",
        processes,
        "processes",
        report.key_limit,
    );
    if !processes.rows.is_empty() {
        let rows = processes
            .rows
            .iter()
            .chain(&processes.other)
            .map(|row| {
                let mut cells = vec![
                    row.comm.clone().unwrap_or_default(),
                    row.exe.clone().unwrap_or_default(),
                    row.connections.to_string(),
                    row.flows.to_string(),
                    human_bytes(row.bytes),
                ];
                hosts_cell(&mut cells, &row.hosts, row.more_hosts);
                cells
            })
            .collect();
        let header = with_hosts(vec![
            "process",
            "executable",
            "connections",
            "flows",
            "bytes",
        ]);
        push_table(&mut text, &header, &[2, 3, 4], rows);
    }

    let ports = &report.local_ports;
    section(
        &mut text,
        "Top local ports (inbound)",
        ports,
        "ports",
        report.key_limit,
    );
    if !ports.rows.is_empty() {
        let rows = ports
            .rows
            .iter()
            .map(|row| (format!("{}/{}", row.port, row.proto), row))
            .chain(ports.other.iter().map(|row| ("other".to_string(), row)))
            .map(|(port, row)| {
                let mut cells = vec![
                    port,
                    row.attempts.to_string(),
                    row.accepted.to_string(),
                    row.dropped.to_string(),
                ];
                hosts_cell(&mut cells, &row.hosts, row.more_hosts);
                cells
            })
            .collect();
        let header = with_hosts(vec!["port", "attempts", "accepted", "dropped/rejected"]);
        push_table(&mut text, &header, &[0, 1, 2, 3], rows);
    }

    timeline(&mut text, report);
    text
}

fn header(text: &mut String, report: &Report) {
    let lines = &report.lines;
    let _ = writeln!(
        text,
        "fwlog summary of {}",
        printable::escaped(&report.inputs.join(", "))
    );
    if let (Some(first), Some(last)) = (report.first_event, report.last_event) {
        let _ = writeln!(
            text,
            "  events from {} to {} UTC",
            table_time(first),
            table_time(last)
        );
    }
    let _ = writeln!(
        text,
        "  {} lines: {} verdict, {} flow, {} lost, {} flows_evicted, {} stats, {} other",
        lines.read,
        lines.verdict,
        lines.flow,
        lines.lost,
        lines.flows_evicted,
        lines.stats,
        lines.other
    );
    if lines.skipped > 0 {
        let _ = writeln!(
            text,
            "  {} lines skipped (not fwlog JSON lines)",
            lines.skipped
        );
    }
    // Per input, when there are several or one went wrong.
    if report.files.len() > 1 || report.files.iter().any(|file| file.error.is_some()) {
        for file in &report.files {
            let name = printable::escaped(&file.name);
            let _ = write!(text, "  {name}: {} lines", file.lines);
            if file.skipped > 0 {
                let _ = write!(text, " ({} skipped)", file.skipped);
            }
            match &file.error {
                Some(error) => {
                    let error = printable::escaped(error);
                    let _ = writeln!(text, ", then UNREADABLE: {error} (the rest is not counted)");
                }
                None => text.push('\n'),
            }
        }
    }
    if lines.outside_time_range > 0 {
        let range = match (report.since, report.until) {
            (Some(since), Some(until)) => {
                format!("from {} to {}", table_time(since), table_time(until))
            }
            (Some(since), None) => format!("from {}", table_time(since)),
            (None, Some(until)) => format!("before {}", table_time(until)),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            text,
            "  {} lines outside the time range ({range} UTC)",
            lines.outside_time_range
        );
    }
    if lines.filtered_out > 0 {
        let _ = writeln!(
            text,
            "  {} verdict/flow lines left out by the filters",
            lines.filtered_out
        );
    }
    if report.events_lost > 0 || report.flows_evicted > 0 {
        let _ = writeln!(
            text,
            "  the kernel lost {} events and evicted {} flows (the tables undercount)",
            report.events_lost, report.flows_evicted
        );
    }
    if report.flows_lost_to_export > 0 {
        let _ = writeln!(
            text,
            "  the IPFIX exporter lost {} flows (their lines are counted here)",
            report.flows_lost_to_export
        );
    }
}

/// A section title, `(none)` for an empty table, and the key-limit note.
fn section<R>(text: &mut String, title: &str, table: &ReportTable<R>, keys: &str, limit: usize) {
    let shown = table.rows.len();
    if shown < table.distinct {
        let _ = writeln!(text, "\n{title}: {shown} of {}", table.distinct);
    } else {
        let _ = writeln!(text, "\n{title}");
    }
    if table.rows.is_empty() {
        text.push_str("  (none)\n");
    }
    if table.other.is_some() {
        let _ = writeln!(
            text,
            "  more than {limit} {keys}: the rest are counted together as \"other\""
        );
    }
}

/// Hosts named in a cell: three, then how many more.
const HOSTS_PER_CELL: usize = 3;

fn host_list(hosts: &[String], more: bool) -> String {
    let mut cell = hosts
        .iter()
        .take(HOSTS_PER_CELL)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let hidden = hosts.len().saturating_sub(HOSTS_PER_CELL);
    if hidden > 0 || more {
        let plus = if more { "+" } else { "" };
        let _ = write!(cell, " (+{hidden}{plus} more)");
    }
    cell
}

fn hosts_table(text: &mut String, report: &Report) {
    let hosts = &report.hosts;
    section(text, "Hosts", hosts, "hosts", report.key_limit);
    let rows = hosts
        .rows
        .iter()
        .chain(&hosts.other)
        .map(|row| {
            vec![
                row.host.clone(),
                row.verdicts.to_string(),
                row.dropped.to_string(),
                row.flows.to_string(),
                human_bytes(row.bytes),
                row.events_lost.to_string(),
            ]
        })
        .collect();
    let header = [
        "host",
        "attempts",
        "dropped/rejected",
        "flows",
        "bytes",
        "lost",
    ];
    push_table(text, &header, &[1, 2, 3, 4, 5], rows);
}

fn timeline(text: &mut String, report: &Report) {
    let hours = &report.timeline;
    let skipped = hours.rows.len().saturating_sub(TIMELINE_HOURS_SHOWN);
    let _ = writeln!(text, "\nTimeline (UTC hours)");
    if hours.rows.is_empty() {
        text.push_str("  (none)\n");
        return;
    }
    if skipped > 0 {
        let _ = writeln!(
            text,
            "  the last {TIMELINE_HOURS_SHOWN} of {} hours (--since, --until or --json for the others)",
            hours.rows.len()
        );
    }
    let rows = hours.rows[skipped..]
        .iter()
        .chain(&hours.other)
        .map(|row| {
            let hour = row.hour.map_or_else(
                || "other".to_string(),
                |hour| table_time(hour).chars().take(13).collect::<String>() + ":00",
            );
            vec![
                hour,
                row.inbound.to_string(),
                row.outbound.to_string(),
                row.dropped.to_string(),
                row.flows.to_string(),
            ]
        })
        .collect();
    let header = ["hour", "inbound", "outbound", "dropped/rejected", "flows"];
    push_table(text, &header, &[1, 2, 3, 4], rows);
}

fn push_table(text: &mut String, header: &[&str], right_aligned: &[usize], rows: Vec<Vec<String>>) {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.iter().copied());
    // Every cell may hold text from a log line (names from the wire, processes): escaped, so
    // it cannot drive the terminal or break into rows of its own.
    for row in rows {
        table.add_row(row.iter().map(|cell| printable::escaped(cell).into_owned()));
    }
    for &index in right_aligned {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let _ = writeln!(text, "{table}");
}

fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `19876` → `19.4 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
