//! `math.fsum` of many slices of one float column: point-in-time sums and means.
//!
//! The same algorithm as CPython's `math.fsum` (Shewchuk's exact partials, then the
//! correctly rounded total with its half-way correction), so every slice gives the same
//! bits as `math.fsum` of that slice in Python. Non-finite values and intermediate
//! overflow are left to Python (`None`), whose `fsum` raises or returns the special value.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Shewchuk's step: add `x` to the non-overlapping `partials`, keeping every non-zero
/// low part in place, and return the new top partial (not yet stored: `math.fsum` drops a
/// zero one, the aggregation states keep it).
pub fn absorb(partials: &mut Vec<f64>, mut x: f64) -> f64 {
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
    x
}

/// The correctly rounded sum of `values`, or `None` when a value is not finite or the
/// partials overflow (CPython's special cases).
fn fsum(values: &[f64], partials: &mut Vec<f64>) -> Option<f64> {
    partials.clear();
    for &value in values {
        if !value.is_finite() {
            return None;
        }
        let x = absorb(partials, value);
        if x != 0.0 {
            if !x.is_finite() {
                return None; // intermediate overflow: Python raises OverflowError
            }
            partials.push(x);
        }
    }
    let mut n = partials.len();
    let mut hi = 0.0;
    if n > 0 {
        n -= 1;
        hi = partials[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = partials[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        // Round half-even correctly: when the rest of the partials would push a half-way
        // case the other way, as CPython does.
        if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            let yr = x - hi;
            if y == yr {
                hi = x;
            }
        }
    }
    Some(hi)
}

/// `math.fsum(values[a[i]:b[i]])` for every `i`, as float64 bytes; `values` are float64
/// bytes. `None` when some slice needs Python's special cases.
#[pyfunction]
pub fn fsum_ranges<'py>(
    py: Python<'py>,
    values: &[u8],
    a: Vec<usize>,
    b: Vec<usize>,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    if values.len() % 8 != 0 || a.len() != b.len() {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "fsum_ranges: values must be float64 bytes and a, b of one length",
        ));
    }
    let floats: Vec<f64> = values
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    let mut out = Vec::with_capacity(a.len() * 8);
    let mut partials = Vec::new();
    for (&i, &j) in a.iter().zip(&b) {
        if i > j || j > floats.len() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "fsum_ranges: slice out of range",
            ));
        }
        match fsum(&floats[i..j], &mut partials) {
            Some(total) => out.extend_from_slice(&total.to_le_bytes()),
            None => return Ok(None),
        }
    }
    Ok(Some(PyBytes::new(py, &out)))
}
