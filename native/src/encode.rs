//! Pushed events (JSON objects, already parsed) checked and encoded as Confluent-framed Avro
//! messages keyed by entity, in one native pass.
//!
//! The native twin of `headwater.serving.push_validation.check_events` and
//! `PushPlan.messages` for sources whose fields are plain primitives (and an event time of
//! epoch milliseconds). It takes only events that the Python path would accept unchanged:
//! every field present with a value of its exact type, no unknown field, the event time in
//! range and not too far ahead. For anything else it returns `None` and the Python path
//! runs, which names each problem; for accepted events both give the same bytes.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::avro::Kind;

struct Field {
    name: Py<PyString>,
    kind: Kind,
    /// Union branch of null (0 or 1), -1 when the field is not nullable.
    null_index: i64,
}

/// Encodes pushes to one source (one schema id).
#[pyclass(frozen, module = "headwater_native")]
pub struct PushEncoder {
    fields: Vec<Field>,
    header: [u8; 5],
    timestamp: usize,
    scale: i64,
    keys: Vec<usize>,
    time_min: i64,
    time_max: i64,
}

#[pymethods]
impl PushEncoder {
    /// `fields`: `(name, kind, null_index)` in schema order; `timestamp`: the event-time
    /// field's index, whose epoch ms are multiplied by `scale`; `keys`: the entity key fields'
    /// indexes (empty: no key); event times must be in `[time_min, time_max)`.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        fields: Vec<(Bound<'_, PyString>, String, i64)>,
        schema_id: u32,
        timestamp: usize,
        scale: i64,
        keys: Vec<usize>,
        time_min: i64,
        time_max: i64,
    ) -> PyResult<Self> {
        let mut out = Vec::new();
        for (name, kind, null_index) in fields {
            // Bytes would need base64 text in, raw bytes out: left to the Python path.
            let kind = match Kind::primitive(&kind) {
                Some(Kind::Bytes) | None => {
                    return Err(pyo3::exceptions::PyValueError::new_err(format!(
                        "kind {kind:?} has no native push encoder"
                    )))
                }
                Some(primitive) => primitive,
            };
            out.push(Field {
                name: name.unbind(),
                kind,
                null_index,
            });
        }
        if timestamp >= out.len() || keys.iter().any(|&k| k >= out.len()) {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "field index out of range",
            ));
        }
        let mut header = [0u8; 5];
        header[1..].copy_from_slice(&schema_id.to_be_bytes());
        Ok(Self {
            fields: out,
            header,
            timestamp,
            scale,
            keys,
            time_min,
            time_max,
        })
    }

    /// `[(key, value), ...]` for `events`, or `None` if some event needs the Python path.
    fn encode<'py>(
        &self,
        py: Python<'py>,
        events: &Bound<'py, PyList>,
        latest_ms: i64,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let out = PyList::empty(py);
        let mut value: Vec<u8> = Vec::with_capacity(128);
        let mut key: Vec<u8> = Vec::with_capacity(32);
        let mut parts: Vec<Option<String>> = vec![None; self.fields.len()];
        for event in events.iter() {
            let Ok(event) = event.downcast_exact::<PyDict>() else {
                return Ok(None);
            };
            if event.len() != self.fields.len() {
                return Ok(None); // a missing (maybe defaulted) or unknown field
            }
            value.clear();
            value.extend_from_slice(&self.header);
            for (i, field) in self.fields.iter().enumerate() {
                let Some(v) = event.get_item(field.name.bind(py))? else {
                    return Ok(None);
                };
                let wanted_key = self.keys.contains(&i);
                if v.is_none() {
                    if field.null_index < 0 || i == self.timestamp {
                        return Ok(None);
                    }
                    write_long(&mut value, field.null_index);
                    if wanted_key {
                        return Ok(None); // a null key: the Python path decides
                    }
                    continue;
                }
                if field.null_index >= 0 {
                    write_long(&mut value, 1 - field.null_index);
                }
                if i == self.timestamp {
                    if !v.is_exact_instance_of::<PyInt>() || !matches!(field.kind, Kind::Long) {
                        return Ok(None);
                    }
                    let Ok(ms) = v.extract::<i64>() else {
                        return Ok(None);
                    };
                    if ms < self.time_min || ms >= self.time_max || ms > latest_ms {
                        return Ok(None);
                    }
                    let Some(stored) = ms.checked_mul(self.scale) else {
                        return Ok(None);
                    };
                    write_long(&mut value, stored);
                    if wanted_key {
                        parts[i] = Some(stored.to_string());
                    }
                    continue;
                }
                match &field.kind {
                    Kind::Boolean => {
                        if !v.is_exact_instance_of::<PyBool>() {
                            return Ok(None);
                        }
                        value.push(u8::from(v.is_truthy()?));
                        if wanted_key {
                            return Ok(None);
                        }
                    }
                    Kind::Int | Kind::Long => {
                        if !v.is_exact_instance_of::<PyInt>() {
                            return Ok(None);
                        }
                        let Ok(n) = v.extract::<i64>() else {
                            return Ok(None);
                        };
                        if matches!(field.kind, Kind::Int) && i32::try_from(n).is_err() {
                            return Ok(None);
                        }
                        write_long(&mut value, n);
                        if wanted_key {
                            parts[i] = Some(n.to_string());
                        }
                    }
                    Kind::Float | Kind::Double => {
                        if wanted_key {
                            return Ok(None);
                        }
                        if !(v.is_exact_instance_of::<PyFloat>()
                            || v.is_exact_instance_of::<PyInt>())
                        {
                            return Ok(None);
                        }
                        let Ok(x) = v.extract::<f64>() else {
                            return Ok(None);
                        };
                        if matches!(field.kind, Kind::Float) {
                            let narrow = x as f32;
                            if x.is_finite() && !narrow.is_finite() {
                                return Ok(None); // Python refuses to pack it
                            }
                            value.extend_from_slice(&narrow.to_le_bytes());
                        } else {
                            value.extend_from_slice(&x.to_le_bytes());
                        }
                    }
                    Kind::Str => {
                        let Ok(text) = v.downcast_exact::<PyString>() else {
                            return Ok(None);
                        };
                        let Ok(text) = text.to_str() else {
                            return Ok(None);
                        };
                        write_long(&mut value, text.len() as i64);
                        value.extend_from_slice(text.as_bytes());
                        if wanted_key {
                            parts[i] = Some(text.to_owned());
                        }
                    }
                    // Null-typed fields: left to the Python path (as any other form).
                    _ => return Ok(None),
                }
            }
            key.clear();
            for (n, &k) in self.keys.iter().enumerate() {
                let Some(part) = parts[k].take() else {
                    return Ok(None);
                };
                if self.keys.len() > 1 && part.contains('\u{1f}') {
                    return Ok(None);
                }
                if n > 0 {
                    key.push(0x1f);
                }
                key.extend_from_slice(part.as_bytes());
            }
            let pair = PyTuple::new(py, [PyBytes::new(py, &key), PyBytes::new(py, &value)])?;
            out.append(pair)?;
        }
        Ok(Some(out))
    }
}

fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}
