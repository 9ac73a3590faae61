mod calc {
    rpc_macros::idl!("calc", r#"
interface Calc {
  int add(int a, int b);
  void ping()
};
"#);
}

fn main() {}
