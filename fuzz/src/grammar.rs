//! A grammar-based generator of IDL files, driven by fuzzer input (or any bytes).
//!
//! It depends on nothing but `std` so that the main workspace's tests can include it
//! (`#[path]`) and compile a sample of its checked outputs: `rpc-macros/tests/ui.rs`.

/// Reads little pieces of fuzzer input as choices.
pub struct Choices<'a> {
    data: &'a [u8],
}

impl<'a> Choices<'a> {
    /// Choices drawn from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data }
    }

    /// The next byte (0 once the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        let v = u16::from_be_bytes([self.byte(), self.byte()]) as usize;
        v % n.max(1)
    }

    /// Up to `max` bytes of the input.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

const NAMES: &[&str] = &[
    "a",
    "b",
    "_1",
    "__2",
    "x_1",
    "Foo",
    "fooBar",
    "FOO_BAR",
    "type",
    "self",
    "Self",
    "new",
    "r",
    "w",
    "ctx",
    "value",
    "Default",
    "Node",
    "List",
    "Result",
    "Option",
    "String",
    "crate",
    "Client",
    "FooClient",
    "A",
    "a_",
    "_",
];
const PRIMS: &[&str] = &[
    "int",
    "unsigned int",
    "unsigned",
    "hyper",
    "unsigned hyper",
    "bool",
    "float",
    "double",
    "string",
    "opaque",
    "void",
    "i32",
    "u64",
    "String",
    "Bytes",
];
const DOCS: &[&str] = &[
    "",
    "/// doc\n",
    "/// a\rb\n",
    "/** block\r\n * more */\n",
    "/* c */\n",
];

/// Builds an IDL file from choices: definitions and interfaces over a small pool of
/// names, so that references resolve and recursion is common.
pub fn grammar(data: &[u8]) -> String {
    let mut c = Choices::new(data);
    let mut out = String::new();
    let name = |c: &mut Choices<'_>| NAMES[c.below(NAMES.len())];
    let ty = |c: &mut Choices<'_>| -> String {
        if c.byte().is_multiple_of(3) {
            NAMES[c.below(NAMES.len())].to_owned()
        } else {
            PRIMS[c.below(PRIMS.len())].to_owned()
        }
    };
    let decl = |c: &mut Choices<'_>| -> String {
        let t = ty(c);
        let n = NAMES[c.below(NAMES.len())];
        match c.byte() % 6 {
            0 => format!("{t} *{n}"),
            1 => format!("{t} {n}<>"),
            2 => format!("{t} {n}<{}>", c.below(10)),
            3 => format!("{t} {n}[{}]", c.below(4) + 1),
            _ => format!("{t} {n}"),
        }
    };
    for _ in 0..c.below(12) {
        if c.is_empty() {
            break;
        }
        out.push_str(DOCS[c.below(DOCS.len())]);
        match c.byte() % 7 {
            0 => out.push_str(&format!(
                "const {} = {};\n",
                name(&mut c),
                c.below(100) as i64 - 10
            )),
            1 => out.push_str(&format!("typedef {};\n", decl(&mut c))),
            2 => {
                let n = name(&mut c);
                let vs: Vec<String> = (0..c.below(4) + 1)
                    .map(|i| format!("{} = {i}", name(&mut c)))
                    .collect();
                out.push_str(&format!("enum {n} {{ {} }};\n", vs.join(", ")));
            }
            3 | 4 => {
                let n = name(&mut c);
                let fs: Vec<String> = (0..c.below(4) + 1)
                    .map(|_| format!("{};", decl(&mut c)))
                    .collect();
                out.push_str(&format!("struct {n} {{ {} }};\n", fs.join(" ")));
            }
            5 => {
                let n = name(&mut c);
                let d = ["int", "unsigned int", "bool"][c.below(3)];
                let mut body = String::new();
                for i in 0..c.below(3) + 1 {
                    let arm = if c.byte().is_multiple_of(3) {
                        "void".to_owned()
                    } else {
                        decl(&mut c)
                    };
                    body.push_str(&format!("case {i}: {arm}; "));
                }
                if c.byte().is_multiple_of(2) {
                    body.push_str(&format!("default: {}; ", decl(&mut c)));
                }
                out.push_str(&format!(
                    "union {n} switch ({d} {}) {{ {body}}};\n",
                    name(&mut c)
                ));
            }
            _ => {
                let n = name(&mut c);
                let procs: Vec<String> = (0..c.below(3) + 1)
                    .map(|_| {
                        let args: Vec<String> = (0..c.below(3)).map(|_| decl(&mut c)).collect();
                        let oneway = if c.byte().is_multiple_of(5) {
                            "oneway void"
                        } else {
                            "int"
                        };
                        format!("{oneway} {}({});", name(&mut c), args.join(", "))
                    })
                    .collect();
                out.push_str(&format!(
                    "interface {n} version 1 {{ {} }};\n",
                    procs.join(" ")
                ));
            }
        }
    }
    out
}
