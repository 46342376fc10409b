//! Native hot paths of Headwater.
//!
//! `TileFolder` (module `fold`) folds a batch's events into entity states.
//!
//! `AvroBatchDecoder` decodes a whole batch of Confluent-framed Avro messages of one writer
//! schema straight into Arrow buffers (validity bitmaps, values, string offsets), which the
//! Python side wraps with `pyarrow.Array.from_buffers` without touching a value. It produces
//! exactly the normalised values of `headwater.schemas.avro_types` (epoch milliseconds,
//! ISO dates, base64 text, ...), and refuses, with a reason, any batch it cannot decode
//! exactly as the Python path would: the caller then takes that path, which names the bad
//! event and its field. The forms it does not know (decimals, arrays, maps, unions of several
//! types) never reach it: the plan builder in Python leaves such schemas to fastavro.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

mod avro;
mod columns;
mod encode;
mod fold;
mod fsum;

use avro::{Kind, Node, Reader};
use columns::{Column, Data};

/// One field of the plan, as the Python plan builder gives it:
/// `(name, kind, null_index, unit, symbols, size, finite, children)`.
type PlanTuple<'py> = (
    String,
    String,
    i64,
    i64,
    Vec<String>,
    usize,
    bool,
    Vec<Bound<'py, PyAny>>,
);

fn node_from_plan(item: &Bound<'_, PyAny>) -> PyResult<Node> {
    let (name, kind, null_index, unit, symbols, size, finite, children): PlanTuple =
        item.extract()?;
    let kind = if let Some(primitive) = Kind::primitive(&kind) {
        primitive
    } else {
        match kind.as_str() {
            "fixed" => Kind::Fixed(size),
            "enum" => Kind::Enum(symbols),
            "scaled" => {
                if unit < 1 {
                    return Err(PyValueError::new_err(format!(
                        "field {name:?}: unit must be >= 1, got {unit}"
                    )));
                }
                Kind::Scaled(unit)
            }
            "date" => Kind::Date,
            "record" => Kind::Record(
                children
                    .iter()
                    .map(node_from_plan)
                    .collect::<PyResult<Vec<Node>>>()?,
            ),
            other => {
                return Err(PyValueError::new_err(format!(
                    "field {name:?}: kind {other:?} has no native decoder"
                )))
            }
        }
    };
    if !(-1..=1).contains(&null_index) {
        return Err(PyValueError::new_err(format!(
            "field {name:?}: null_index must be -1, 0 or 1, got {null_index}"
        )));
    }
    Ok(Node {
        name,
        kind,
        null_index,
        finite,
    })
}

fn column_to_py<'py>(py: Python<'py>, column: Column) -> PyResult<Bound<'py, PyTuple>> {
    let length = column.len;
    let nulls = column.nulls;
    let validity = if nulls > 0 {
        Some(PyBytes::new(py, &column.validity))
    } else {
        None
    };
    let mut buffers: Vec<Bound<'py, PyBytes>> = Vec::new();
    let mut children: Vec<Bound<'py, PyTuple>> = Vec::new();
    match column.data {
        Data::Null => {}
        Data::Bool(bits) => buffers.push(PyBytes::new(py, &bits)),
        Data::I32(values) => buffers.push(PyBytes::new(py, columns::as_bytes(&values))),
        Data::I64(values) => buffers.push(PyBytes::new(py, columns::as_bytes(&values))),
        Data::F32(values) => buffers.push(PyBytes::new(py, columns::as_bytes(&values))),
        Data::F64(values) => buffers.push(PyBytes::new(py, columns::as_bytes(&values))),
        Data::Str { offsets, data } => {
            buffers.push(PyBytes::new(py, columns::as_bytes(&offsets)));
            buffers.push(PyBytes::new(py, &data));
        }
        Data::Struct(kids) => {
            for kid in kids {
                children.push(column_to_py(py, kid)?);
            }
        }
    }
    (length, nulls, validity, buffers, children).into_pyobject(py)
}

/// Decodes batches of Confluent-framed messages written with one schema id.
#[pyclass(frozen, module = "headwater_native")]
struct AvroBatchDecoder {
    fields: Vec<Node>,
    header: [u8; 5],
}

#[pymethods]
impl AvroBatchDecoder {
    /// `fields`: the plan of the record's fields (see `node_from_plan`); `schema_id`: the
    /// only schema id this decoder accepts in a message's header.
    #[new]
    fn new(fields: &Bound<'_, PyList>, schema_id: u32) -> PyResult<Self> {
        let fields = fields
            .iter()
            .map(|item| node_from_plan(&item))
            .collect::<PyResult<Vec<Node>>>()?;
        let mut header = [0u8; 5];
        header[1..].copy_from_slice(&schema_id.to_be_bytes());
        Ok(Self { fields, header })
    }

    /// The columns of the batch, one `(length, null_count, validity, buffers, children)`
    /// per field, or a `str` saying why this batch must take the Python path (a message of
    /// another schema id, a tombstone, a body that does not decode, a non-finite number).
    fn decode<'py>(
        &self,
        py: Python<'py>,
        payloads: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut owned: Vec<Bound<'py, PyBytes>> = Vec::with_capacity(payloads.len());
        for (index, item) in payloads.iter().enumerate() {
            match item.downcast_into::<PyBytes>() {
                Ok(bytes) => owned.push(bytes),
                Err(_) => {
                    let reason = format!("message {index} has no value (a tombstone)");
                    return Ok(reason.into_pyobject(py)?.into_any());
                }
            }
        }
        let mut bodies: Vec<&[u8]> = Vec::with_capacity(owned.len());
        for (index, bytes) in owned.iter().enumerate() {
            let data = bytes.as_bytes();
            if data.len() < 5 || data[..5] != self.header {
                let reason = format!("message {index} is not of this decoder's schema id");
                return Ok(reason.into_pyobject(py)?.into_any());
            }
            bodies.push(&data[5..]);
        }
        let fields = &self.fields;
        let decoded = py.allow_threads(|| decode_all(fields, &bodies));
        match decoded {
            Ok(columns) => {
                let out = PyList::empty(py);
                for column in columns {
                    out.append(column_to_py(py, column)?)?;
                }
                Ok(out.into_any())
            }
            Err(reason) => Ok(reason.into_pyobject(py)?.into_any()),
        }
    }
}

fn decode_all(fields: &[Node], bodies: &[&[u8]]) -> Result<Vec<Column>, String> {
    let mut columns: Vec<Column> = fields
        .iter()
        .map(|f| Column::for_node(f, bodies.len()))
        .collect();
    for (index, body) in bodies.iter().enumerate() {
        let mut reader = Reader::new(body);
        for (field, column) in fields.iter().zip(columns.iter_mut()) {
            avro::decode(field, &mut reader, column)
                .map_err(|e| format!("message {index}: field {:?}: {e}", field.name))?;
        }
    }
    Ok(columns)
}

/// Base64 text (RFC 4648, padded) of `data`: the normalised value of `bytes` and `fixed`.
fn base64_text(data: &[u8]) -> String {
    BASE64.encode(data)
}

#[pymodule]
fn headwater_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AvroBatchDecoder>()?;
    m.add_class::<fold::FoldBatch>()?;
    m.add_class::<fold::TileFolder>()?;
    m.add_class::<encode::PushEncoder>()?;
    m.add_function(wrap_pyfunction!(fsum::fsum_ranges, m)?)?;
    Ok(())
}
