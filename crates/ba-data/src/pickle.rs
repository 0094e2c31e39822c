//! A strict reader for the pickles of CIFAR-10's python version: dicts, lists, tuples, ints,
//! strings and numpy arrays, as Python 2's cPickle wrote them (protocol 2, byte strings as
//! `str`) and as Python 3 writes them (protocols 2 to 5, numpy 1 or 2).
//!
//! Written by hand because unpickling runs whatever callables the file names: this reader
//! knows the handful of opcodes those files use and only the numpy and codecs callables that
//! rebuild an array; anything else is refused with an error, never executed. (The
//! `serde-pickle` crate cannot rebuild numpy arrays.)

use std::collections::HashMap;
use std::rc::Rc;

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// Bytes (Python 2 `str`, Python 3 `bytes`/`bytearray`).
    Bytes(Rc<[u8]>),
    /// Text.
    Str(String),
    /// A list or tuple.
    List(Vec<Value>),
    /// A dict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A numpy array.
    Array(Array),
    /// A numpy dtype, by its type string (`"u1"`, `"i8"`, ...).
    Dtype(String),
    /// A callable the reader allows, waiting for its arguments.
    Global(Callable),
}

/// The callables a CIFAR-10 pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callable {
    /// `numpy.core.multiarray._reconstruct` (an empty array, filled by BUILD).
    Reconstruct,
    /// `numpy.ndarray` (the class `_reconstruct` receives).
    NdArray,
    /// `numpy.dtype`.
    Dtype,
    /// `numpy.core.numeric._frombuffer` (protocol 5).
    FromBuffer,
    /// `_codecs.encode` (how Python 3 protocol 2 stores bytes).
    Encode,
}

/// A numpy array: element type, shape and raw little-endian bytes in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// numpy type string without byte order, e.g. `"u1"`.
    pub dtype: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Raw element bytes, C order.
    pub data: Rc<[u8]>,
}

impl Value {
    /// The value under `key` (bytes or text) of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let Value::Dict(items) = self else { return None };
        items.iter().find_map(|(k, v)| match k {
            Value::Bytes(b) if &b[..] == key.as_bytes() => Some(v),
            Value::Str(s) if s == key => Some(v),
            _ => None,
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Array(_) => "array",
            Value::Dtype(_) => "dtype",
            Value::Global(_) => "callable",
        }
    }
}

/// A stack item: a value, a MARK, or a container that is being filled (memo entries of
/// containers are not supported: CIFAR-10 pickles never share them).
#[derive(Debug)]
enum Item {
    Mark,
    Value(Value),
}

/// Decodes one pickle. The error says what was found and where.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    Parser { bytes, pos: 0, stack: Vec::new(), memo: HashMap::new() }.run()
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    memo: HashMap<u32, Value>,
}

impl Parser<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            format!("truncated: needs {n} bytes at offset {} but the file has {}", self.pos, self.bytes.len())
        })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn len(&mut self, n: u64) -> Result<usize, String> {
        usize::try_from(n).map_err(|_| format!("length {n} too large"))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("truncated: unterminated GLOBAL name")?;
        let text = std::str::from_utf8(&rest[..end]).map_err(|_| "GLOBAL name is not UTF-8")?.to_string();
        self.pos += end + 1;
        Ok(text)
    }

    fn push(&mut self, v: Value) {
        self.stack.push(Item::Value(v));
    }

    fn pop(&mut self) -> Result<Value, String> {
        match self.stack.pop() {
            Some(Item::Value(v)) => Ok(v),
            Some(Item::Mark) => Err("unexpected MARK on the stack".into()),
            None => Err("stack underflow".into()),
        }
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        match self.stack.last_mut() {
            Some(Item::Value(v)) => Ok(v),
            _ => Err("no value on the stack".into()),
        }
    }

    /// The values pushed since the last MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.stack.iter().rposition(|i| matches!(i, Item::Mark)).ok_or("no MARK on the stack")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|i| match i {
                Item::Value(v) => v,
                Item::Mark => unreachable!("the last mark was found above"),
            })
            .collect())
    }

    fn memoize(&mut self, key: u32) -> Result<(), String> {
        let v = match self.stack.last() {
            Some(Item::Value(v)) => v,
            _ => return Err("memo of an empty stack".into()),
        };
        // Containers and arrays are still being filled: remember that they cannot be fetched back.
        let stored = match v {
            Value::List(_) | Value::Dict(_) | Value::Array(_) => Value::None,
            other => other.clone(),
        };
        self.memo.insert(key, stored);
        Ok(())
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.u8().map_err(|_| "truncated: the pickle ends before its STOP opcode".to_string())?;
            self.op(op).map_err(|e| format!("pickle opcode {op:#04x} at offset {at}: {e}"))?;
            if op == b'.' {
                let v = self.pop()?;
                return if self.stack.is_empty() { Ok(v) } else { Err("values left on the stack at STOP".into()) };
            }
        }
    }

    fn op(&mut self, op: u8) -> Result<(), String> {
        match op {
            0x80 => {
                let proto = self.u8()?;
                if proto > 5 {
                    return Err(format!("unknown pickle protocol {proto}"));
                }
            }
            0x95 => {
                self.u64()?; // FRAME: a length hint only
            }
            b'.' => {}
            b'(' => self.stack.push(Item::Mark),
            b'}' => self.push(Value::Dict(Vec::new())),
            b']' => self.push(Value::List(Vec::new())),
            b')' => self.push(Value::List(Vec::new())),
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.bytes()?);
                self.push(Value::Int(v as i64));
            }
            b'J' => {
                let v = i32::from_le_bytes(self.bytes()?);
                self.push(Value::Int(v as i64));
            }
            0x8a => {
                let n = self.u8()? as usize;
                let raw = self.take(n)?;
                if n > 8 {
                    return Err(format!("integer of {n} bytes"));
                }
                let mut buf = if raw.last().is_some_and(|&b| b & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                buf[..n].copy_from_slice(raw);
                self.push(Value::Int(i64::from_le_bytes(buf)));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.bytes()?);
                self.push(Value::Float(v));
            }
            b'U' | b'C' => {
                let n = self.u8()? as usize;
                let b = self.take(n)?.into();
                self.push(Value::Bytes(b));
            }
            b'T' | b'B' => {
                let n = self.u32()? as usize;
                let b = self.take(n)?.into();
                self.push(Value::Bytes(b));
            }
            0x8e | 0x96 => {
                let n = self.u64()?;
                let n = self.len(n)?;
                let b = self.take(n)?.into();
                self.push(Value::Bytes(b));
            }
            0x8c | b'X' | 0x8d => {
                let n = match op {
                    0x8c => self.u8()? as u64,
                    b'X' => self.u32()? as u64,
                    _ => self.u64()?,
                };
                let n = self.len(n)?;
                let text = std::str::from_utf8(self.take(n)?).map_err(|_| "string is not UTF-8")?.to_string();
                self.push(Value::Str(text));
            }
            b'q' => {
                let k = self.u8()? as u32;
                self.memoize(k)?;
            }
            b'r' => {
                let k = self.u32()?;
                self.memoize(k)?;
            }
            0x94 => {
                let k = self.memo.len() as u32;
                self.memoize(k)?;
            }
            b'h' | b'j' => {
                let k = if op == b'h' { self.u8()? as u32 } else { self.u32()? };
                match self.memo.get(&k) {
                    Some(Value::None) | None => return Err(format!("memo entry {k} is missing or a shared container")),
                    Some(v) => {
                        let v = v.clone();
                        self.push(v);
                    }
                }
            }
            b'a' => {
                let v = self.pop()?;
                match self.top()? {
                    Value::List(items) => items.push(v),
                    other => return Err(format!("APPEND to a {}", other.kind())),
                }
            }
            b'e' => {
                let values = self.pop_mark()?;
                match self.top()? {
                    Value::List(items) => items.extend(values),
                    other => return Err(format!("APPENDS to a {}", other.kind())),
                }
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                match self.top()? {
                    Value::Dict(items) => items.push((k, v)),
                    other => return Err(format!("SETITEM on a {}", other.kind())),
                }
            }
            b'u' => {
                let values = self.pop_mark()?;
                if values.len() % 2 != 0 {
                    return Err("SETITEMS with an odd number of values".into());
                }
                let mut it = values.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                match self.top()? {
                    Value::Dict(items) => items.extend(pairs),
                    other => return Err(format!("SETITEMS on a {}", other.kind())),
                }
            }
            b't' => {
                let values = self.pop_mark()?;
                self.push(Value::List(values));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut values = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                values.reverse();
                self.push(Value::List(values));
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                let g = global(&module, &name)?;
                self.push(Value::Global(g));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return Err("STACK_GLOBAL needs two strings".into());
                };
                let g = global(&module, &name)?;
                self.push(Value::Global(g));
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let (Value::Global(callable), Value::List(args)) = (callable, args) else {
                    return Err("REDUCE needs an allowed callable and an argument tuple".into());
                };
                let v = reduce(callable, args)?;
                self.push(v);
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?;
                build(target, state)?;
            }
            _ => return Err("not an opcode a CIFAR-10 pickle uses; the file is corrupt or not CIFAR-10".into()),
        }
        Ok(())
    }
}

fn global(module: &str, name: &str) -> Result<Callable, String> {
    let numpy_core = matches!(module, "numpy.core.multiarray" | "numpy._core.multiarray");
    let numpy_numeric = matches!(module, "numpy.core.numeric" | "numpy._core.numeric");
    match (module, name) {
        (_, "_reconstruct") if numpy_core => Ok(Callable::Reconstruct),
        (_, "_frombuffer") if numpy_numeric => Ok(Callable::FromBuffer),
        ("numpy", "ndarray") => Ok(Callable::NdArray),
        ("numpy", "dtype") => Ok(Callable::Dtype),
        ("_codecs", "encode") => Ok(Callable::Encode),
        _ => Err(format!("refusing to call {module}.{name}: a CIFAR-10 batch never does, so the file is not one")),
    }
}

fn reduce(callable: Callable, args: Vec<Value>) -> Result<Value, String> {
    match (callable, args.as_slice()) {
        (Callable::Reconstruct, [Value::Global(Callable::NdArray), ..]) => {
            Ok(Value::Array(Array { dtype: String::new(), shape: Vec::new(), data: Rc::from(&[][..]) }))
        }
        (Callable::Dtype, [Value::Str(t), ..]) => Ok(Value::Dtype(t.clone())),
        (Callable::Dtype, [Value::Bytes(t), ..]) => {
            Ok(Value::Dtype(String::from_utf8(t.to_vec()).map_err(|_| "dtype name is not text")?))
        }
        (Callable::Encode, [Value::Str(text), Value::Str(codec)]) if codec == "latin1" || codec == "latin-1" => text
            .chars()
            .map(|c| u8::try_from(c as u32).map_err(|_| "latin1 text outside 0..=255".to_string()))
            .collect::<Result<Vec<u8>, _>>()
            .map(|b| Value::Bytes(b.into())),
        (Callable::FromBuffer, [Value::Bytes(data), Value::Dtype(dtype), Value::List(shape), Value::Str(order)]) => {
            if order != "C" {
                return Err(format!("array in {order} order (expected C)"));
            }
            let shape = dims(shape)?;
            array(dtype, shape, data.clone())
        }
        (c, a) => Err(format!("{c:?} called with unexpected arguments ({} values)", a.len())),
    }
}

fn dims(shape: &[Value]) -> Result<Vec<usize>, String> {
    shape
        .iter()
        .map(|d| match d {
            Value::Int(n) if *n >= 0 => Ok(*n as usize),
            other => Err(format!("array dimension {other:?}")),
        })
        .collect()
}

fn array(dtype: &str, shape: Vec<usize>, data: Rc<[u8]>) -> Result<Value, String> {
    let dtype = dtype.trim_start_matches(['<', '|', '=']).to_string();
    let width: usize = dtype.get(1..).and_then(|w| w.parse().ok()).ok_or(format!("unknown dtype {dtype:?}"))?;
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or("array too large")?;
    if count.checked_mul(width) != Some(data.len()) {
        return Err(format!(
            "array of shape {shape:?} and type {dtype} needs {} bytes, has {}",
            count.saturating_mul(width),
            data.len()
        ));
    }
    Ok(Value::Array(Array { dtype, shape, data }))
}

/// BUILD: sets the state of an array (from `_reconstruct`) or a dtype.
fn build(target: &mut Value, state: Value) -> Result<(), String> {
    let Value::List(state) = state else { return Err("BUILD state is not a tuple".into()) };
    match target {
        // (version, shape, dtype, is_fortran, raw data)
        Value::Array(_) => match state.as_slice() {
            [Value::Int(_), Value::List(shape), Value::Dtype(dtype), Value::Bool(fortran), Value::Bytes(data)] => {
                if *fortran {
                    return Err("Fortran-ordered array (expected C order)".into());
                }
                *target = array(dtype, dims(shape)?, data.clone())?;
                Ok(())
            }
            _ => Err("array state is not (version, shape, dtype, fortran, bytes)".into()),
        },
        // (version, byte order, ...): only the byte order matters here.
        Value::Dtype(dtype) => {
            let big_endian = match state.get(1) {
                Some(Value::Str(order)) => order == ">",
                Some(Value::Bytes(order)) => &order[..] == b">",
                _ => return Err("dtype state without a byte order".into()),
            };
            if big_endian {
                return Err(format!("big-endian dtype {dtype}"));
            }
            Ok(())
        }
        other => Err(format!("BUILD on a {}", other.kind())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_python2_style_strings_and_containers() {
        // {'a': [1, 300, -2], 'b': 'xy'} as protocol 2 with byte strings (cPickle style).
        let mut p = vec![0x80, 2, b'}', b'q', 1, b'(', b'U', 1, b'a', b']', b'q', 2, b'('];
        p.extend([b'K', 1, b'M', 44, 1, b'J', 0xfe, 0xff, 0xff, 0xff, b'e']);
        p.extend([b'U', 1, b'b', b'U', 2, b'x', b'y', b'u', b'.']);
        let v = parse(&p).unwrap();
        assert_eq!(v.get("a"), Some(&Value::List(vec![Value::Int(1), Value::Int(300), Value::Int(-2)])));
        assert_eq!(v.get("b"), Some(&Value::Bytes(b"xy"[..].into())));
    }

    #[test]
    fn refuses_arbitrary_callables_and_truncation() {
        let evil = b"cos\nsystem\n(S'echo hi'\ntR.";
        let err = parse(evil).unwrap_err();
        assert!(err.contains("refusing to call os.system"), "{err}");
        let err = parse(&[0x80, 2, b'}', b'U', 5, b'a']).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let err = parse(&[0x80, 2, b'}']).unwrap_err();
        assert!(err.contains("ends before its STOP"), "{err}");
    }
}
