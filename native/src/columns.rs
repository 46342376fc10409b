//! Arrow-layout column builders: a validity bitmap and the values of one field.

use crate::avro::{Kind, Node};

pub enum Data {
    Null,
    Bool(Vec<u8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Str { offsets: Vec<i32>, data: Vec<u8> },
    Struct(Vec<Column>),
}

pub struct Column {
    pub len: usize,
    pub nulls: usize,
    /// Bit i set: row i is valid (Arrow's LSB-first validity bitmap).
    pub validity: Vec<u8>,
    pub data: Data,
}

impl Column {
    pub fn for_node(node: &Node, capacity: usize) -> Self {
        let data = match &node.kind {
            Kind::Null => Data::Null,
            Kind::Boolean => Data::Bool(Vec::with_capacity(capacity / 8 + 1)),
            Kind::Int => Data::I32(Vec::with_capacity(capacity)),
            Kind::Long | Kind::Scaled(_) => Data::I64(Vec::with_capacity(capacity)),
            Kind::Float => Data::F32(Vec::with_capacity(capacity)),
            Kind::Double => Data::F64(Vec::with_capacity(capacity)),
            Kind::Str | Kind::Bytes | Kind::Fixed(_) | Kind::Enum(_) | Kind::Date => {
                let mut offsets = Vec::with_capacity(capacity + 1);
                offsets.push(0);
                Data::Str {
                    offsets,
                    data: Vec::with_capacity(capacity * 8),
                }
            }
            Kind::Record(fields) => Data::Struct(
                fields
                    .iter()
                    .map(|f| Column::for_node(f, capacity))
                    .collect(),
            ),
        };
        Self {
            len: 0,
            nulls: 0,
            validity: Vec::with_capacity(capacity / 8 + 1),
            data,
        }
    }

    fn next_bit(&mut self, valid: bool) {
        let i = self.len;
        if i % 8 == 0 {
            self.validity.push(0);
        }
        if valid {
            self.validity[i / 8] |= 1 << (i % 8);
        }
        self.len += 1;
    }

    pub fn push_valid(&mut self) {
        self.next_bit(true);
    }

    /// A null row: a placeholder value keeps every buffer at the row count.
    pub fn push_null(&mut self) {
        let i = self.len;
        match &mut self.data {
            Data::Null => {}
            Data::Bool(bits) => {
                if i % 8 == 0 {
                    bits.push(0);
                }
            }
            Data::I32(v) => v.push(0),
            Data::I64(v) => v.push(0),
            Data::F32(v) => v.push(0.0),
            Data::F64(v) => v.push(0.0),
            Data::Str { offsets, .. } => {
                let last = *offsets.last().unwrap_or(&0);
                offsets.push(last);
            }
            Data::Struct(children) => {
                for child in children {
                    child.push_null();
                }
            }
        }
        self.nulls += 1;
        self.next_bit(false);
    }
}

/// The bytes of a slice of plain numbers, little-endian as Arrow (and this machine) lays them.
pub fn as_bytes<T: Copy>(values: &[T]) -> &[u8] {
    // SAFETY: T is a plain number type (i32, i64, f32, f64) with no padding; the result
    // borrows `values` and covers exactly its bytes.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}
