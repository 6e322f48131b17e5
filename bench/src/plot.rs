//! SVG plots of a run: fan-out latency percentiles (log scale) against
//! delivery rate (chat server solid, NATS dashed), and the server's resident memory
//! against open idle streams (with the 12 KiB-per-stream target as a line).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::prelude::*;

use crate::report::{Results, IDLE_KIB_PER_STREAM};
use crate::scenario::fanout::FanoutResult;
use crate::scenario::idle::IdleResult;

const SIZE: (u32, u32) = (960, 600);
const P50: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(214, 39, 40);
const P999: RGBColor = RGBColor(148, 103, 189);
const TARGET: RGBColor = RGBColor(120, 120, 120);

/// Draws every plot the results allow into `dir`; returns the files.
///
/// # Errors
/// When a file cannot be written.
pub fn write_all(results: &Results, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    if results.fanout.is_some() || results.baseline.is_some() {
        let path = dir.join("latency-vs-rate.svg");
        latency_vs_rate(&path, results.fanout.as_ref(), results.baseline.as_ref())
            .with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    if let Some(idle) = results.idle.as_ref().filter(|i| i.samples.len() > 1) {
        let path = dir.join("memory-vs-streams.svg");
        memory_vs_streams(&path, idle).with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// A step's rate and percentiles: (deliveries/s, p50, p99, p999), in ms.
type Point = (f64, f64, f64, f64);
/// Picks one percentile of a point.
type Pick = fn(&Point) -> f64;

/// The points of every measured step, by rate.
fn latency_points(fanout: &FanoutResult) -> Vec<Point> {
    let mut points: Vec<_> = std::iter::once(&fanout.fixed)
        .chain(&fanout.ladder.steps)
        .filter(|s| s.latency.count > 0 && s.deliveries_per_sec > 0.0)
        .map(|s| {
            let l = &s.latency;
            (
                s.deliveries_per_sec,
                l.p50_ms.max(0.001),
                l.p99_ms.max(0.001),
                l.p999_ms.max(0.001),
            )
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

fn latency_vs_rate(
    path: &Path,
    chat: Option<&FanoutResult>,
    nats: Option<&FanoutResult>,
) -> anyhow::Result<()> {
    let chat_points = chat.map(latency_points).unwrap_or_default();
    let nats_points = nats.map(latency_points).unwrap_or_default();
    let all: Vec<_> = chat_points.iter().chain(&nats_points).collect();
    let x_max = all.iter().map(|p| p.0).fold(1_000.0, f64::max) * 1.05;
    let x_min = 0.0;
    let y_max = all.iter().map(|p| p.3).fold(100.0, f64::max) * 2.0;
    let y_min = all.iter().map(|p| p.1).fold(1.0, f64::min) / 2.0;
    let streams = chat.or(nats).map_or(0, |f| f.streams);

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Fan-out to {streams} streams: publish-to-delivery latency vs rate"),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x_min..x_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("deliveries per second")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| crate::report::thousands(*x))
        .draw()?;
    let percentiles: [(&str, RGBColor, Pick); 3] = [
        ("p50", P50, |p| p.1),
        ("p99", P99, |p| p.2),
        ("p99.9", P999, |p| p.3),
    ];
    for (name, color, value) in percentiles {
        let chat_line: Vec<(f64, f64)> = chat_points.iter().map(|p| (p.0, value(p))).collect();
        let nats_line: Vec<(f64, f64)> = nats_points.iter().map(|p| (p.0, value(p))).collect();
        if !chat_line.is_empty() {
            chart
                .draw_series(LineSeries::new(chat_line.clone(), color.stroke_width(2)))?
                .label(format!("chat {name}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(chat_line.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        if !nats_line.is_empty() {
            chart
                .draw_series(DashedLineSeries::new(
                    nats_line.clone(),
                    6,
                    4,
                    color.stroke_width(1),
                ))?
                .label(format!("NATS {name} (dashed)"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1))
                });
            chart.draw_series(nats_line.iter().map(|&p| TriangleMarker::new(p, 4, color)))?;
        }
    }
    for (limit, name) in [(50.0, "p99 limit 50 ms"), (20.0, "p99 target 20 ms")] {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x_min, limit), (x_max, limit)],
                3,
                3,
                TARGET.stroke_width(1),
            ))?
            .label(name)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], TARGET));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn memory_vs_streams(path: &Path, idle: &IdleResult) -> anyhow::Result<()> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let points: Vec<(f64, f64)> = idle
        .samples
        .iter()
        .map(|&(n, kib)| (n as f64, mib(kib)))
        .collect();
    let before = idle.server_rss_before_kib.map_or(points[0].1, mib);
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let target_end = before + x_max * IDLE_KIB_PER_STREAM / 1024.0;
    let y_max = points.iter().map(|p| p.1).fold(target_end, f64::max) * 1.1;

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Server resident memory vs open idle ChatStreams ({} streams)",
                idle.opened
            ),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("open streams (one connection each)")
        .y_desc("server RSS (MiB)")
        .x_label_formatter(&|x| crate::report::thousands(*x))
        .draw()?;
    chart
        .draw_series(LineSeries::new(points.clone(), P99.stroke_width(2)))?
        .label("measured RSS")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], P99.stroke_width(2)));
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 2, P99.filled())))?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, before), (x_max, target_end)],
            6,
            4,
            TARGET.stroke_width(1),
        ))?
        .label(format!(
            "target: start + {IDLE_KIB_PER_STREAM} KiB per stream"
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], TARGET));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
