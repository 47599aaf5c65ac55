//! `cargo xtask bench [--quick]`: runs the benches and judges the headline figures.
//!
//! Runs the criterion bench `actors`, the memory bench `memory` and the paired-ratio bench
//! `paired` of `foundation-actors`; reads criterion's estimates, `target/bench-memory.json`
//! and `target/bench-paired.json`; prints one table, writes
//! `target/bench-summary.json`, and ends with `budgets met: N of M`. A budget that is not
//! met does not fail the command; a missing result does.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{cargo, run_step, workspace_root};

/// What a figure must satisfy.
#[derive(Debug, Clone, Copy)]
enum Budget {
    /// `value / competitor_value` at most this.
    Ratio(f64),
    /// `value` at most this many nanoseconds.
    AtMostNs(f64),
    /// `value - competitor_value` at most this many bytes.
    AddedBytes(f64),
    /// Reported only, never judged.
    None,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Ratio(max) => write!(f, "ratio <= {max}"),
            Budget::AtMostNs(max) => write!(f, "<= {max} ns"),
            Budget::AddedBytes(max) => write!(f, "+<= {max} B"),
            Budget::None => f.write_str("none"),
        }
    }
}

/// One headline timing figure: ours against the competitor, both criterion benchmark ids.
#[derive(Debug)]
struct Headline {
    /// Figure name shown in the table.
    name: &'static str,
    /// Criterion id (`group/function`) of Foundation's measurement.
    ours: &'static str,
    /// Criterion id (`group/function`) of the competitor's measurement.
    competitor: &'static str,
    /// Unit of the mean (every bench measures one operation per iteration).
    unit: &'static str,
    /// What the figure must satisfy.
    budget: Budget,
    /// The group in `bench-paired.json` whose paired ratio is this figure's ratio, if any.
    paired: Option<&'static str>,
}

/// The headline timing figures, in table order.
const HEADLINES: &[Headline] = &[
    Headline {
        name: "tell",
        ours: "tell/foundation",
        competitor: "tell/ractor",
        paired: Some("tell"),
        unit: "ns/msg",
        budget: Budget::Ratio(1.2),
    },
    Headline {
        name: "call round trip",
        ours: "call/foundation",
        competitor: "call/ractor",
        paired: Some("call"),
        unit: "ns",
        budget: Budget::Ratio(1.2),
    },
    Headline {
        name: "supervised child start",
        ours: "child_start/foundation",
        competitor: "child_start/ractor",
        paired: Some("child_start"),
        unit: "ns",
        budget: Budget::Ratio(1.3),
    },
    Headline {
        name: "restart latency",
        ours: "restart/foundation",
        competitor: "restart/ractor",
        paired: Some("restart"),
        unit: "ns",
        budget: Budget::AtMostNs(100_000.0),
    }, // The same groups on a 2-worker runtime: reported, not judged (see the bench's
    // `Flavor` for why the headlines run on a current-thread runtime).
    Headline {
        name: "tell, 2 workers",
        ours: "tell_2w/foundation",
        competitor: "tell_2w/ractor",
        paired: None,
        unit: "ns/msg",
        budget: Budget::None,
    },
    Headline {
        name: "call round trip, 2 workers",
        ours: "call_2w/foundation",
        competitor: "call_2w/ractor",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "supervised child start, 2 workers",
        ours: "child_start_2w/foundation",
        competitor: "child_start_2w/ractor",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "restart latency, 2 workers",
        ours: "restart_2w/foundation",
        competitor: "restart_2w/ractor",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "child start with a unique id",
        ours: "child_start/foundation_named",
        competitor: "child_start/ractor",
        paired: Some("child_start_named"),
        unit: "ns",
        budget: Budget::None,
    },
];

/// Budgets for entries of `bench-memory.json`, by name; entries not listed have none.
const MEMORY_BUDGETS: &[(&str, Budget)] = &[("idle supervised actor", Budget::AddedBytes(1024.0))];

/// One row of the summary.
#[derive(Debug)]
struct Figure {
    /// Figure name.
    name: String,
    /// Foundation's value.
    value: f64,
    /// Unit of `value` and `competitor_value`.
    unit: String,
    /// What the figure is compared with, if anything.
    competitor: Option<String>,
    /// The competitor's value, if any.
    competitor_value: Option<f64>,
    /// What the figure must satisfy.
    budget: Budget,
    /// The median ratio of paired rounds, where measured (see the `paired` bench).
    paired_ratio: Option<f64>,
}

impl Figure {
    /// The paired ratio where measured, else `value / competitor_value`.
    fn ratio(&self) -> Option<f64> {
        self.paired_ratio.or_else(|| {
            self.competitor_value
                .filter(|c| *c > 0.0 && c.is_finite())
                .map(|c| self.value / c)
        })
    }

    /// Whether the budget is met (always for no budget; never when its input is missing).
    fn met(&self) -> bool {
        match self.budget {
            Budget::Ratio(max) => self.ratio().is_some_and(|r| r <= max),
            Budget::AtMostNs(max) => self.value <= max,
            Budget::AddedBytes(max) => self.competitor_value.is_some_and(|c| self.value - c <= max),
            Budget::None => true,
        }
    }
}

/// Runs the benches, then prints and writes the summary.
pub(crate) fn run(args: &[OsString]) -> Result<()> {
    let mut quick = false;
    for arg in args {
        match arg.to_str() {
            Some("--quick") => quick = true,
            _ => bail!(
                "xtask bench: unknown argument `{}` (usage: cargo xtask bench [--quick])",
                arg.to_string_lossy()
            ),
        }
    }

    let mut actors = cargo()?;
    actors.args(["bench", "-p", "foundation-actors", "--bench", "actors"]);
    if quick {
        actors.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
    }
    eprintln!("==> xtask bench: actors");
    run_step("bench", "actors", actors)?;

    let mut memory = cargo()?;
    memory.args(["bench", "-p", "foundation-actors", "--bench", "memory"]);
    eprintln!("==> xtask bench: memory");
    run_step("bench", "memory", memory)?;

    let mut paired_bench = cargo()?;
    paired_bench.args(["bench", "-p", "foundation-actors", "--bench", "paired"]);
    eprintln!("==> xtask bench: paired");
    run_step("bench", "paired", paired_bench)?;

    let target = target_dir()?;
    let paired_path = target.join("bench-paired.json");
    let paired = read_json(&paired_path).context(
        "no paired-ratio results; run `cargo bench -p foundation-actors --bench paired`",
    )?;
    let mut figures = Vec::new();
    for headline in HEADLINES {
        figures.push(Figure {
            name: headline.name.to_owned(),
            value: criterion_mean(&target, headline.ours)?,
            unit: headline.unit.to_owned(),
            competitor: Some(headline.competitor.to_owned()),
            competitor_value: Some(criterion_mean(&target, headline.competitor)?),
            budget: headline.budget,
            paired_ratio: match headline.paired {
                Some(group) => Some(paired_ratio(&paired, group)?),
                None => None,
            },
        });
    }
    figures.extend(memory_figures(&target)?);

    print_table(&figures);
    println!(
        "values: criterion estimates; ratio: median of paired rounds (bench `paired`) where \
         measured (all single-thread timing rows), value / competitor value otherwise"
    );

    let summary_path = target.join("bench-summary.json");
    fs::write(&summary_path, summary_json(&figures)?)
        .with_context(|| format!("writing {}", summary_path.display()))?;
    eprintln!("==> xtask bench: wrote {}", summary_path.display());

    let judged: Vec<&Figure> = figures
        .iter()
        .filter(|f| !matches!(f.budget, Budget::None))
        .collect();
    let met = judged.iter().filter(|f| f.met()).count();
    println!("budgets met: {met} of {}", judged.len());
    Ok(())
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else `<workspace root>/target`.
fn target_dir() -> Result<PathBuf> {
    let root = workspace_root()?;
    Ok(match std::env::var_os("CARGO_TARGET_DIR") {
        // A relative value is relative to where cargo ran, which is the workspace root.
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    })
}

/// Criterion's time per iteration, in nanoseconds, for benchmark id `group/function`: the
/// estimate criterion itself reports (the slope of its linear fit, or the mean where it has
/// no slope), so the table matches what criterion printed.
fn criterion_mean(target: &Path, id: &str) -> Result<f64> {
    let mut path = target.join("criterion");
    path.extend(id.split('/'));
    path.push("new");
    path.push("estimates.json");
    let estimates = read_json(&path).with_context(|| {
        format!("no criterion results for `{id}`; run `cargo xtask bench` to produce them")
    })?;
    estimates
        .pointer("/slope/point_estimate")
        .and_then(Value::as_f64)
        .or_else(|| {
            estimates
                .pointer("/mean/point_estimate")
                .and_then(Value::as_f64)
        })
        .with_context(|| format!("{} has no slope or mean estimate", path.display()))
}

/// The figures of `bench-memory.json`, every entry, with their budgets.
fn memory_figures(target: &Path) -> Result<Vec<Figure>> {
    let path = target.join("bench-memory.json");
    let doc = read_json(&path).context(
        "no memory bench results; run `cargo bench -p foundation-actors --bench memory`",
    )?;
    let entries = doc
        .get("figures")
        .and_then(Value::as_array)
        .with_context(|| format!("{} has no `figures` array", path.display()))?;

    let mut figures = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let field = |key: &str| entry.get(key).filter(|v| !v.is_null());
        let name = field("name").and_then(Value::as_str).with_context(|| {
            format!("{}: figures[{index}] has no string `name`", path.display())
        })?;
        let value = field("value").and_then(Value::as_f64).with_context(|| {
            format!("{}: figure `{name}` has no number `value`", path.display())
        })?;
        let unit = field("unit").and_then(Value::as_str).unwrap_or("B");
        let competitor = field("competitor").and_then(Value::as_str);
        let competitor_value = match field("competitor_value") {
            None => None,
            Some(v) => Some(v.as_f64().with_context(|| {
                format!(
                    "{}: figure `{name}` has a non-numeric `competitor_value`",
                    path.display()
                )
            })?),
        };
        let budget = MEMORY_BUDGETS
            .iter()
            .find(|(budgeted, _)| *budgeted == name)
            .map_or(Budget::None, |(_, budget)| *budget);
        if matches!(budget, Budget::AddedBytes(_)) && competitor_value.is_none() {
            bail!(
                "{}: figure `{name}` needs a `competitor_value` for its budget",
                path.display()
            );
        }
        figures.push(Figure {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            competitor: competitor.map(str::to_owned),
            competitor_value,
            budget,
            paired_ratio: None,
        });
    }
    Ok(figures)
}

/// The median paired ratio of `group` in `bench-paired.json`.
fn paired_ratio(paired: &Value, group: &str) -> Result<f64> {
    paired
        .get("pairs")
        .and_then(Value::as_array)
        .and_then(|pairs| {
            pairs
                .iter()
                .find(|p| p.get("group").and_then(Value::as_str) == Some(group))
        })
        .and_then(|p| p.get("ratio"))
        .and_then(Value::as_f64)
        .with_context(|| format!("bench-paired.json has no ratio for `{group}`"))
}

/// Reads and parses one JSON file, naming it in any error.
fn read_json(path: &Path) -> Result<Value> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// Formats a measured value for the table.
fn number(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// Prints the summary table to stdout.
fn print_table(figures: &[Figure]) {
    const HEADER: [&str; 8] = [
        "figure",
        "value",
        "unit",
        "competitor",
        "competitor value",
        "ratio",
        "budget",
        "met",
    ];
    /// Columns holding numbers, right-aligned.
    const NUMERIC: [bool; 8] = [false, true, false, false, true, true, false, false];

    let rows: Vec<[String; 8]> = figures
        .iter()
        .map(|f| {
            [
                f.name.clone(),
                number(f.value),
                f.unit.clone(),
                f.competitor.clone().unwrap_or_else(|| "-".to_owned()),
                f.competitor_value.map_or_else(|| "-".to_owned(), number),
                f.ratio()
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
                f.budget.to_string(),
                if f.met() { "yes" } else { "NO" }.to_owned(),
            ]
        })
        .collect();

    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let line = |cells: [&str; 8]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let width = widths[i];
            if NUMERIC[i] {
                out.push_str(&format!("{cell:>width$}"));
            } else {
                out.push_str(&format!("{cell:<width$}"));
            }
        }
        println!("{}", out.trim_end());
    };

    line(HEADER);
    let rule = widths.map(|w| "-".repeat(w));
    line(rule.each_ref().map(String::as_str));
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
}

/// `{"figures": [...]}` with each figure's keys in the documented order.
fn summary_json(figures: &[Figure]) -> Result<String> {
    let mut out = String::from("{\n  \"figures\": [");
    for (i, f) in figures.iter().enumerate() {
        let fields: [(&str, Value); 8] = [
            ("name", Value::from(f.name.as_str())),
            ("value", number_value(Some(f.value))),
            ("unit", Value::from(f.unit.as_str())),
            (
                "competitor",
                f.competitor.as_deref().map_or(Value::Null, Value::from),
            ),
            ("competitor_value", number_value(f.competitor_value)),
            ("ratio", number_value(f.ratio())),
            ("budget", Value::from(f.budget.to_string())),
            ("met", Value::from(f.met())),
        ];
        out.push_str(if i == 0 { "\n    {" } else { ",\n    {" });
        for (j, (key, value)) in fields.iter().enumerate() {
            out.push_str(if j == 0 { "\n      " } else { ",\n      " });
            out.push_str(&serde_json::to_string(key).context("encoding summary JSON")?);
            out.push_str(": ");
            out.push_str(&serde_json::to_string(value).context("encoding summary JSON")?);
        }
        out.push_str("\n    }");
    }
    if !figures.is_empty() {
        out.push_str("\n  ");
    }
    out.push_str("]\n}\n");
    Ok(out)
}

/// A JSON number, or `null` for a missing or non-finite value.
fn number_value(value: Option<f64>) -> Value {
    value
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}
