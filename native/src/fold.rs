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
    /// before `keep_from` go to the lifetime only. Returns whether any event was new, the
    /// newest folded event time, and the indices of the events dated after `now`.
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
        let columns: Vec<&Bound<'_, PyList>> =
            batch.columns.iter().map(|c| c.bind(py)).collect();
        for i in indices {
            let (Some(&e), Some(&seq)) = (batch.times.get(i), batch.seqs.get(i)) else {
                return Err(PyValueError::new_err(format!("event index {i} is not in the batch")));
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
                let tile = match tiles.get_item(k)? {
                    Some(tile) => tile.downcast_into::<PyDict>()?,
                    None => {
                        let tile = PyDict::new(py);
                        tiles.set_item(k, &tile)?;
                        tile
                    }
                };
                self.add(py, &columns, i, e, seq, &tile)?;
                self.add(py, &columns, i, e, seq, lifetime)?;
                changed.add(k)?;
            } else {
                self.add(py, &columns, i, e, seq, lifetime)?;
            }
            newest = Some(newest.map_or(e, |n| n.max(e)));
        }
        Ok((any, newest, pending))
    }
}

impl TileFolder {
    fn add(
        &self,
        py: Python<'_>,
        columns: &[&Bound<'_, PyList>],
        i: usize,
        e: i64,
        seq: i64,
        state: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        for ((key, &field), &op) in self.keys.iter().zip(&self.fields).zip(&self.ops) {
            let key = key.bind(py);
            let value = if field < 0 {
                None // the event itself: only counted
            } else {
                let value = columns[field as usize].get_item(i)?;
                if value.is_none() {
                    continue;
                }
                Some(value)
            };
            let current = state.get_item(key)?;
            let new: Bound<'_, PyAny> = match (op, current, value) {
                (Op::Count, None, _) => 1i64.into_pyobject(py)?.into_any(),
                (Op::Count, Some(c), _) => c.add(1i64)?,
                (_, _, None) => continue, // only counts take the event itself
                (Op::ISum, None, Some(v)) => v,
                (Op::ISum, Some(c), Some(v)) => c.add(v)?,
                (Op::FSum, c, Some(v)) => {
                    let mut partials: Vec<f64> = match c {
                        Some(c) => c.extract()?,
                        None => Vec::new(),
                    };
                    grow(&mut partials, v.extract::<f64>()?);
                    PyList::new(py, partials)?.into_any()
                }
                (Op::Min, Some(c), Some(v)) => {
                    if v.lt(&c)? {
                        v
                    } else {
                        c
                    }
                }
                (Op::Max, Some(c), Some(v)) => {
                    if v.gt(&c)? {
                        v
                    } else {
                        c
                    }
                }
                (Op::Min | Op::Max, None, Some(v)) => v,
                (Op::Last | Op::First, c, Some(v)) => {
                    let keep_new = match &c {
                        None => true,
                        Some(c) => {
                            let old = (c.get_item(0)?.extract::<i64>()?, c.get_item(1)?.extract::<i64>()?);
                            if matches!(op, Op::Last) {
                                (e, seq) >= old
                            } else {
                                (e, seq) < old
                            }
                        }
                    };
                    match (keep_new, c) {
                        (false, Some(c)) => c,
                        _ => PyList::new(py, [e.into_pyobject(py)?.into_any(), seq.into_pyobject(py)?.into_any(), v])?.into_any(),
                    }
                }
            };
            state.set_item(key, new)?;
        }
        Ok(())
    }
}

/// Add `x` to Shewchuk's non-overlapping partials, keeping the sum exact: the same steps as
/// `headwater.schemas.aggregations._grow`, so the partials are the same floats.
fn grow(partials: &mut Vec<f64>, mut x: f64) {
    let mut i = 0;
    for j in 0..partials.len() {
        let mut y = partials[j];
        if x.abs() < y.abs() {
            std::mem::swap(&mut x, &mut y);
        }
        let hi = x + y;
        let lo = y - (hi - x);
        if lo != 0.0 {
            partials[i] = lo;
            i += 1;
        }
        x = hi;
    }
    partials.truncate(i);
    partials.push(x);
}
