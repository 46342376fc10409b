//! Events of a batch folded into an entity's tile and lifetime partial states.
//!
//! The native twin of `FeatureSetPlan.apply`'s inner loop and `Aggregator.add_both` in
//! `headwater.schemas`, for the partial kinds whose fold is plain arithmetic or comparison:
//! counts, integer and exact float sums, min, max, last and first. The states stay the
//! Python dicts and lists that Redis stores as JSON, so the Python code reads, merges and
//! writes them as before; integer sums and comparisons go through Python's own operators,
//! so big integers and mixed types behave exactly as in Python. A plan with another kind
//! (stddev's exact squares, count_distinct, last_n) keeps the Python fold.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyString};

const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: i64 = (1 << OFFSET_BITS) - 1;

#[derive(Clone, Copy)]
enum Op {
    Count,
    ISum,
    FSum,
    Min,
    Max,
    Last,
    First,
}

/// The columns of one batch that a plan's partials read, with each event's time and
/// arrival order (`arrival_seq`): made once per batch, shared by every entity's fold.
#[pyclass(frozen, module = "headwater_native")]
pub struct FoldBatch {
    columns: Vec<Py<PyList>>,
    times: Vec<i64>,
    seqs: Vec<i64>,
}

#[pymethods]
impl FoldBatch {
    #[new]
    fn new(columns: Vec<Bound<'_, PyList>>, times: Vec<i64>, seqs: Vec<i64>) -> PyResult<Self> {
        let n = times.len();
        if seqs.len() != n || columns.iter().any(|c| c.len() != n) {
            return Err(PyValueError::new_err(
                "FoldBatch: every column, times and seqs need one item per event",
            ));
        }
        Ok(Self {
            columns: columns.into_iter().map(Bound::unbind).collect(),
            times,
            seqs,
        })
    }
}

/// The fold of one plan: `(partial key, field index or -1 for the event itself, kind)`.
#[pyclass(frozen, module = "headwater_native")]
pub struct TileFolder {
    keys: Vec<Py<PyString>>,
    fields: Vec<i64>,
    ops: Vec<Op>,
    resolution: i64,
}

#[pymethods]
impl TileFolder {
    #[new]
    fn new(adders: Vec<(Bound<'_, PyString>, i64, String)>, resolution_ms: i64) -> PyResult<Self> {
        if resolution_ms < 1 {
            return Err(PyValueError::new_err("resolution_ms must be >= 1"));
        }
        let mut keys = Vec::new();
        let mut fields = Vec::new();
        let mut ops = Vec::new();
        for (key, field, kind) in adders {
            ops.push(match kind.as_str() {
                "n" | "nn" => Op::Count,
                "isum" => Op::ISum,
                "fsum" => Op::FSum,
                "min" => Op::Min,
                "max" => Op::Max,
                "last" => Op::Last,
                "first" => Op::First,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "partial kind {other:?} has no native fold"
                    )))
                }
            });
            keys.push(key.unbind());
            fields.push(field);
        }
        Ok(Self {
            keys,
            fields,
            ops,
            resolution: resolution_ms,
        })
    }

    /// Fold the batch's events `indices` (one entity's, in arrival order) as of `now`.
    ///
    /// Skips events at or below `offsets` of their partition and advances it; events dated
    /// after `now` are only returned (the caller parks them as pending); events in tiles
    /// before `keep_from` go to the lifetime only, and tiles before it are dropped. Returns
    /// whether the state changed (a new event or a dropped tile), the newest folded event
    /// time, and the indices of the events dated after `now`.
    ///
    /// Each state (the lifetime, each tile) is read into native accumulators when an event
    /// first reaches it and written back once at the end, with its keys in the order the
    /// Python fold would have inserted them, so the states and their JSON are the same.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (batch, indices, tiles, lifetime, changed, offsets, now, keep_from, newest))]
    fn fold(
        &self,
        py: Python<'_>,
        batch: &FoldBatch,
        indices: Vec<usize>,
        tiles: &Bound<'_, PyDict>,
        lifetime: &Bound<'_, PyDict>,
        changed: &Bound<'_, PySet>,
        offsets: &Bound<'_, PyDict>,
        now: i64,
        keep_from: i64,
        newest: Option<i64>,
    ) -> PyResult<(bool, Option<i64>, Vec<usize>)> {
        let mut any = false;
        let mut newest = newest;
        let mut pending = Vec::new();
        let columns: Vec<&Bound<'_, PyList>> = batch.columns.iter().map(|c| c.bind(py)).collect();
        let mut life: Option<Folding<'_>> = None;
        let mut open: Vec<(i64, Folding<'_>)> = Vec::new();
        for i in indices {
            let (Some(&e), Some(&seq)) = (batch.times.get(i), batch.seqs.get(i)) else {
                return Err(PyValueError::new_err(format!(
                    "event index {i} is not in the batch"
                )));
            };
            let partition = seq >> OFFSET_BITS;
            let offset = seq & OFFSET_MASK;
            let current: i64 = match offsets.get_item(partition)? {
                Some(value) => value.extract()?,
                None => -1,
            };
            if offset <= current {
                continue;
            }
            any = true;
            offsets.set_item(partition, offset)?;
            if e > now {
                pending.push(i);
                continue;
            }
            let k = e.div_euclid(self.resolution);
            if k >= keep_from {
                let position = match open.iter().position(|(tile, _)| *tile == k) {
                    Some(position) => position,
                    None => {
                        let tile = match tiles.get_item(k)? {
                            Some(tile) => tile.downcast_into::<PyDict>()?,
                            None => {
                                let tile = PyDict::new(py);
                                tiles.set_item(k, &tile)?;
                                tile
                            }
                        };
                        open.push((k, Folding::load(self, tile)?));
                        open.len() - 1
                    }
                };
                open[position].1.add(self, &columns, i, e, seq)?;
                changed.add(k)?;
            }
            if life.is_none() {
                life = Some(Folding::load(self, lifetime.clone())?);
            }
            if let Some(life) = life.as_mut() {
                life.add(self, &columns, i, e, seq)?;
            }
            newest = Some(newest.map_or(e, |n| n.max(e)));
        }
        for (_, tile) in open {
            tile.store(self, py)?;
        }
        if let Some(life) = life {
            life.store(self, py)?;
        }
        // Tiles that fell out of the longest window: dropped, and marked for the writer.
        let mut stale = Vec::new();
        for key in tiles.keys() {
            if key.extract::<i64>()? < keep_from {
                stale.push(key);
            }
        }
        for key in &stale {
            tiles.del_item(key)?;
            changed.add(key)?;
        }
        Ok((any || !stale.is_empty(), newest, pending))
    }
}

/// One partial's value while a state is being folded.
enum Acc<'py> {
    /// The stored count (if any) and the events counted since.
    Count(Option<Bound<'py, PyAny>>, i64),
    /// Values that are not 64-bit integers summed by Python; the others natively.
    ISum(Option<Bound<'py, PyAny>>, i128),
    FSum(Option<Vec<f64>>),
    Min(Option<Bound<'py, PyAny>>),
    Max(Option<Bound<'py, PyAny>>),
    Last(Option<(i64, i64, Bound<'py, PyAny>)>),
    First(Option<(i64, i64, Bound<'py, PyAny>)>),
}

/// A state dict (a tile or the lifetime) read into accumulators.
struct Folding<'py> {
    dict: Bound<'py, PyDict>,
    accs: Vec<Acc<'py>>,
    /// The partial was in the dict when it was read.
    present: Vec<bool>,
    /// The partial got a value since it was read.
    touched: Vec<bool>,
    /// Partials new to the dict, in the order their first value came.
    new_order: Vec<usize>,
}

impl<'py> Folding<'py> {
    fn load(folder: &TileFolder, dict: Bound<'py, PyDict>) -> PyResult<Self> {
        let py = dict.py();
        let mut accs = Vec::with_capacity(folder.ops.len());
        let mut present = Vec::with_capacity(folder.ops.len());
        for (key, op) in folder.keys.iter().zip(&folder.ops) {
            let value = dict.get_item(key.bind(py))?;
            present.push(value.is_some());
            accs.push(match op {
                Op::Count => Acc::Count(value, 0),
                Op::ISum => Acc::ISum(value, 0),
                Op::FSum => Acc::FSum(value.map(|v| v.extract::<Vec<f64>>()).transpose()?),
                Op::Min => Acc::Min(value),
                Op::Max => Acc::Max(value),
                Op::Last => Acc::Last(value.map(|v| triple(&v)).transpose()?),
                Op::First => Acc::First(value.map(|v| triple(&v)).transpose()?),
            });
        }
        let n = accs.len();
        Ok(Self {
            dict,
            accs,
            present,
            touched: vec![false; n],
            new_order: Vec::new(),
        })
    }

    fn add(
        &mut self,
        folder: &TileFolder,
        columns: &[&Bound<'py, PyList>],
        i: usize,
        e: i64,
        seq: i64,
    ) -> PyResult<()> {
        for (j, &field) in folder.fields.iter().enumerate() {
            let value = if field < 0 {
                None // the event itself: only counted
            } else {
                let value = columns[field as usize].get_item(i)?;
                if value.is_none() {
                    continue;
                }
                Some(value)
            };
            let mut valued = true; // the partial holds a value after this event
            match (&mut self.accs[j], value) {
                (Acc::Count(_, n), _) => *n += 1,
                (_, None) => continue, // only counts take the event itself
                (Acc::ISum(python, native), Some(v)) => match v.extract::<i64>() {
                    Ok(x) => *native += i128::from(x),
                    Err(_) => {
                        *python = Some(match python.take() {
                            None => v,
                            Some(sum) => sum.add(v)?,
                        })
                    }
                },
                (Acc::FSum(partials), Some(v)) => {
                    grow(partials.get_or_insert_with(Vec::new), v.extract::<f64>()?)
                }
                (Acc::Min(current), Some(v)) => {
                    let replace = match current {
                        None => true,
                        Some(c) => v.lt(&*c)?,
                    };
                    if replace {
                        *current = Some(v);
                    } else {
                        valued = self.touched[j] || self.present[j];
                    }
                }
                (Acc::Max(current), Some(v)) => {
                    let replace = match current {
                        None => true,
                        Some(c) => v.gt(&*c)?,
                    };
                    if replace {
                        *current = Some(v);
                    } else {
                        valued = self.touched[j] || self.present[j];
                    }
                }
                (Acc::Last(current), Some(v)) => {
                    let replace = match current {
                        None => true,
                        Some((ce, cs, _)) => (e, seq) >= (*ce, *cs),
                    };
                    if replace {
                        *current = Some((e, seq, v));
                    } else {
                        valued = self.touched[j] || self.present[j];
                    }
                }
                (Acc::First(current), Some(v)) => {
                    let replace = match current {
                        None => true,
                        Some((ce, cs, _)) => (e, seq) < (*ce, *cs),
                    };
                    if replace {
                        *current = Some((e, seq, v));
                    } else {
                        valued = self.touched[j] || self.present[j];
                    }
                }
            }
            if valued && !self.touched[j] {
                self.touched[j] = true;
                if !self.present[j] {
                    self.new_order.push(j);
                }
            }
        }
        Ok(())
    }

    /// Write the touched partials back: present ones in place, new ones in the order of
    /// their first value (what the Python fold's inserts give).
    fn store(self, folder: &TileFolder, py: Python<'py>) -> PyResult<()> {
        let Folding {
            dict,
            accs,
            present,
            touched,
            new_order,
        } = self;
        let mut values: Vec<Option<Bound<'py, PyAny>>> = Vec::with_capacity(accs.len());
        for (j, acc) in accs.into_iter().enumerate() {
            values.push(if touched[j] {
                Some(acc.into_value(py)?)
            } else {
                None
            });
        }
        for j in (0..values.len()).filter(|&j| present[j]) {
            if let Some(value) = &values[j] {
                dict.set_item(folder.keys[j].bind(py), value)?;
            }
        }
        for j in new_order {
            if let Some(value) = &values[j] {
                dict.set_item(folder.keys[j].bind(py), value)?;
            }
        }
        Ok(())
    }
}

impl<'py> Acc<'py> {
    fn into_value(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            Acc::Count(None, n) => n.into_pyobject(py)?.into_any(),
            Acc::Count(Some(stored), n) => stored.add(n)?,
            Acc::ISum(python, native) => {
                let native = native.into_pyobject(py)?.into_any();
                match python {
                    None => native,
                    Some(sum) => sum.add(native)?,
                }
            }
            Acc::FSum(partials) => PyList::new(py, partials.unwrap_or_default())?.into_any(),
            Acc::Min(value) | Acc::Max(value) => value
                .ok_or_else(|| PyValueError::new_err("a touched min/max has a value (a bug)"))?,
            Acc::Last(value) | Acc::First(value) => {
                let (e, seq, v) = value.ok_or_else(|| {
                    PyValueError::new_err("a touched last/first has a value (a bug)")
                })?;
                PyList::new(
                    py,
                    [
                        e.into_pyobject(py)?.into_any(),
                        seq.into_pyobject(py)?.into_any(),
                        v,
                    ],
                )?
                .into_any()
            }
        })
    }
}

/// `[e, seq, value]` of a stored `last` or `first` partial.
fn triple<'py>(value: &Bound<'py, PyAny>) -> PyResult<(i64, i64, Bound<'py, PyAny>)> {
    Ok((
        value.get_item(0)?.extract()?,
        value.get_item(1)?.extract()?,
        value.get_item(2)?,
    ))
}

/// Add `x` to Shewchuk's non-overlapping partials, keeping the sum exact: the same steps as
/// `headwater.schemas.aggregations._grow`, so the partials are the same floats (which
/// always keeps the new top partial, zero included).
fn grow(partials: &mut Vec<f64>, x: f64) {
    let top = crate::fsum::absorb(partials, x);
    partials.push(top);
}
