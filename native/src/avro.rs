//! Avro binary decoding of one record's fields into columns, with Headwater's normalised
//! values (see `headwater.schemas.avro_types`).

use crate::columns::{Column, Data};

/// The forms the native decoder knows; anything else stays with the Python path.
pub enum Kind {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Str,
    Bytes,
    Fixed(usize),
    Enum(Vec<String>),
    /// A timestamp or time of `unit` physical units per millisecond: floor-divided to ms.
    Scaled(i64),
    /// Days since the epoch, normalised to `YYYY-MM-DD` text.
    Date,
    Record(Vec<Node>),
}

impl Kind {
    /// The Avro primitive type named `name` (`None` for any other name).
    pub fn primitive(name: &str) -> Option<Kind> {
        Some(match name {
            "null" => Kind::Null,
            "boolean" => Kind::Boolean,
            "int" => Kind::Int,
            "long" => Kind::Long,
            "float" => Kind::Float,
            "double" => Kind::Double,
            "string" => Kind::Str,
            "bytes" => Kind::Bytes,
            _ => return None,
        })
    }
}

pub struct Node {
    pub name: String,
    pub kind: Kind,
    /// The union branch of `null` in `["null", T]` (0) or `[T, "null"]` (1); -1: not a union.
    pub null_index: i64,
    /// Refuse NaN and infinities (the worker's rule for top-level float and double fields).
    pub finite: bool,
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| "the body ends early".to_string())?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// A zig-zag varint (Avro `int` and `long` share the encoding).
    pub fn long(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| "the body ends early".to_string())?;
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err("a varint longer than 64 bits".into());
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err("a varint longer than 64 bits".into());
            }
        }
        Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    fn length(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| format!("a negative length {n}"))
    }
}

/// Decode one value of `node` from `r` and append it to `column`.
pub fn decode(node: &Node, r: &mut Reader<'_>, column: &mut Column) -> Result<(), String> {
    if node.null_index >= 0 {
        let branch = r.long()?;
        if branch == node.null_index {
            column.push_null();
            return Ok(());
        }
        if branch != 1 - node.null_index {
            return Err(format!("union branch {branch} does not exist"));
        }
    }
    match (&node.kind, &mut column.data) {
        (Kind::Null, Data::Null) => column.push_null(),
        (Kind::Boolean, Data::Bool(bits)) => {
            let byte = r.take(1)?[0];
            if byte > 1 {
                return Err(format!("boolean byte {byte}"));
            }
            let i = column.len;
            if i % 8 == 0 {
                bits.push(0);
            }
            bits[i / 8] |= byte << (i % 8);
            column.push_valid();
        }
        (Kind::Int, Data::I32(values)) => {
            let v = r.long()?;
            values.push(i32::try_from(v).map_err(|_| format!("int {v} out of range"))?);
            column.push_valid();
        }
        (Kind::Long, Data::I64(values)) => {
            values.push(r.long()?);
            column.push_valid();
        }
        (Kind::Scaled(unit), Data::I64(values)) => {
            values.push(r.long()?.div_euclid(*unit));
            column.push_valid();
        }
        (Kind::Float, Data::F32(values)) => {
            let raw = r.take(4)?;
            let v = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            if node.finite && !v.is_finite() {
                return Err(format!("{v} is not a finite number"));
            }
            values.push(v);
            column.push_valid();
        }
        (Kind::Double, Data::F64(values)) => {
            let raw = r.take(8)?;
            let mut b = [0u8; 8];
            b.copy_from_slice(raw);
            let v = f64::from_le_bytes(b);
            if node.finite && !v.is_finite() {
                return Err(format!("{v} is not a finite number"));
            }
            values.push(v);
            column.push_valid();
        }
        (Kind::Str, Data::Str { offsets, data }) => {
            let n = r.length()?;
            let raw = r.take(n)?;
            std::str::from_utf8(raw).map_err(|e| format!("text is not UTF-8 ({e})"))?;
            data.extend_from_slice(raw);
            push_offset(offsets, data.len())?;
            column.push_valid();
        }
        (Kind::Bytes, Data::Str { offsets, data }) => {
            let n = r.length()?;
            let raw = r.take(n)?;
            data.extend_from_slice(crate::base64_text(raw).as_bytes());
            push_offset(offsets, data.len())?;
            column.push_valid();
        }
        (Kind::Fixed(size), Data::Str { offsets, data }) => {
            let raw = r.take(*size)?;
            data.extend_from_slice(crate::base64_text(raw).as_bytes());
            push_offset(offsets, data.len())?;
            column.push_valid();
        }
        (Kind::Enum(symbols), Data::Str { offsets, data }) => {
            let i = r.long()?;
            let symbol = usize::try_from(i)
                .ok()
                .and_then(|i| symbols.get(i))
                .ok_or_else(|| format!("enum index {i} out of range"))?;
            data.extend_from_slice(symbol.as_bytes());
            push_offset(offsets, data.len())?;
            column.push_valid();
        }
        (Kind::Date, Data::Str { offsets, data }) => {
            let days = r.long()?;
            data.extend_from_slice(iso_date(days)?.as_bytes());
            push_offset(offsets, data.len())?;
            column.push_valid();
        }
        (Kind::Record(fields), Data::Struct(children)) => {
            for (field, child) in fields.iter().zip(children.iter_mut()) {
                decode(field, r, child).map_err(|e| format!("{}: {e}", field.name))?;
            }
            column.push_valid();
        }
        _ => return Err("plan and column disagree (a bug)".into()),
    }
    Ok(())
}

fn push_offset(offsets: &mut Vec<i32>, end: usize) -> Result<(), String> {
    offsets.push(i32::try_from(end).map_err(|_| "more than 2 GiB of text in one batch")?);
    Ok(())
}

/// `YYYY-MM-DD` of a day count since 1970-01-01, for years 1 to 9999 (Python's `date`);
/// days from civil by Howard Hinnant's algorithm.
pub fn iso_date(days: i64) -> Result<String, String> {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(1..=9999).contains(&year) {
        return Err(format!(
            "date {days} days from 1970-01-01 is outside years 1 to 9999"
        ));
    }
    Ok(format!("{year:04}-{month:02}-{day:02}"))
}
