//! The build script (`rpc_codegen::Builder`) and the proc-macro (`rpc_macros::idl!`)
//! produce identical code for the same IDL, and both outputs work. The inline IDL below
//! is `proto/calc.idl`: the macro's output equals the build script's, and the build
//! script's equals the compiler's output for the file, so a drift in either shows.

/// The macro's output for the same text, as a string.
const MACRO_SOURCE: &str = rpc_macros::idl_source!(
    "calc",
    r#"/* A calculator service: the framework's running example.
 * Shows constants, typedefs, enums, structs, unions, optional values, fixed and
 * variable arrays, bounded strings, opaque data, oneway and idempotent procedures. */
package calc;

const MAX_NAME = 64;
const MAX_POINTS = 1024;

/// A shape's name.
typedef string Name<MAX_NAME>;

/// An IPv4 address in network byte order.
typedef opaque Ipv4[4];

/// Arithmetic operations.
enum Op {
  ADD = 1,
  SUB = 2,
  MUL = 3,
  DIV = 4
};

/// A point on the integer grid.
struct Point {
  int x;
  int y;
};

/// A named polygon.
struct Shape {
  /// The shape's name.
  Name name;
  /// Its vertices.
  Point points<MAX_POINTS>;
  /// Its centre, if known.
  Point *centre;
  /// The last operation applied to it.
  Op op;
};

/// The outcome of evaluating an expression.
union Outcome switch (int status) {
  case 0:
    double value;
  case 1:
    void;
  default:
    string error<>;
};

/// One step of a batch computation.
struct Step {
  Op op;
  double operand;
};

/// The calculator.
interface Calc version 1 {
  /// Adds two integers.
  int add(int a, int b);
  /// Applies one operation.
  Outcome apply(Op op, double a, double b);
  /// The mean of a list of numbers (safe to retry).
  [idempotent] double mean(double xs<>);
  /// Runs a batch of steps from a starting value.
  Outcome run(double start, Step steps<16>);
  /// Returns its argument.
  string echo(string s<>);
  /// Stores a blob and returns its CRC-32.
  unsigned int put(opaque blob<>);
  /// Formats an IPv4 address as dotted decimal.
  string format_ip(Ipv4 addr);
  /// Scales a shape about the origin.
  Shape scale(Shape s, float k);
  /// Finds the point nearest to the origin, if any.
  Point *nearest(Point points<>);
  /// Does nothing; measures the round trip.
  void ping();
  /// Writes a line to the server's log; no reply.
  oneway void log(string line<>);
  /// Adds two integers on the server's dispatch loop: a cheap handler, no hand-off to a
  /// worker (see docs/PERFORMANCE.md).
  [idempotent, inline] int add_inline(int a, int b);
  /// Returns its blob. A large blob travels by reference on the client's send path
  /// (shared descriptors) and arrives as a slice of the server's receive buffer.
  [idempotent] opaque echo_blob(opaque blob<>);
};
"#
);

/// The build script's output.
const BUILD_SOURCE: &str = include_str!(concat!(env!("OUT_DIR"), "/calc.rs"));

mod via_macro {
    rpc_macros::idl!(
        "calc",
        r#"/* A calculator service: the framework's running example.
 * Shows constants, typedefs, enums, structs, unions, optional values, fixed and
 * variable arrays, bounded strings, opaque data, oneway and idempotent procedures. */
package calc;

const MAX_NAME = 64;
const MAX_POINTS = 1024;

/// A shape's name.
typedef string Name<MAX_NAME>;

/// An IPv4 address in network byte order.
typedef opaque Ipv4[4];

/// Arithmetic operations.
enum Op {
  ADD = 1,
  SUB = 2,
  MUL = 3,
  DIV = 4
};

/// A point on the integer grid.
struct Point {
  int x;
  int y;
};

/// A named polygon.
struct Shape {
  /// The shape's name.
  Name name;
  /// Its vertices.
  Point points<MAX_POINTS>;
  /// Its centre, if known.
  Point *centre;
  /// The last operation applied to it.
  Op op;
};

/// The outcome of evaluating an expression.
union Outcome switch (int status) {
  case 0:
    double value;
  case 1:
    void;
  default:
    string error<>;
};

/// One step of a batch computation.
struct Step {
  Op op;
  double operand;
};

/// The calculator.
interface Calc version 1 {
  /// Adds two integers.
  int add(int a, int b);
  /// Applies one operation.
  Outcome apply(Op op, double a, double b);
  /// The mean of a list of numbers (safe to retry).
  [idempotent] double mean(double xs<>);
  /// Runs a batch of steps from a starting value.
  Outcome run(double start, Step steps<16>);
  /// Returns its argument.
  string echo(string s<>);
  /// Stores a blob and returns its CRC-32.
  unsigned int put(opaque blob<>);
  /// Formats an IPv4 address as dotted decimal.
  string format_ip(Ipv4 addr);
  /// Scales a shape about the origin.
  Shape scale(Shape s, float k);
  /// Finds the point nearest to the origin, if any.
  Point *nearest(Point points<>);
  /// Does nothing; measures the round trip.
  void ping();
  /// Writes a line to the server's log; no reply.
  oneway void log(string line<>);
  /// Adds two integers on the server's dispatch loop: a cheap handler, no hand-off to a
  /// worker (see docs/PERFORMANCE.md).
  [idempotent, inline] int add_inline(int a, int b);
  /// Returns its blob. A large blob travels by reference on the client's send path
  /// (shared descriptors) and arrives as a slice of the server's receive buffer.
  [idempotent] opaque echo_blob(opaque blob<>);
};
"#
    );
}

#[test]
fn build_script_output_is_the_compilers_output_for_the_proto_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/calc.idl");
    let idl = std::fs::read_to_string(path).unwrap();
    let generated = rpc_codegen::generate_source("calc.idl", &idl).unwrap();
    assert_eq!(BUILD_SOURCE, generated);
}

#[test]
fn build_script_and_macro_generate_identical_code() {
    assert!(BUILD_SOURCE.starts_with("// @generated by rpc-codegen"));
    assert_eq!(BUILD_SOURCE, MACRO_SOURCE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_outputs_make_real_calls_to_each_other() {
    use examples::calc_service::CalcService;
    use rpc_core::transport::Listener;
    use rpc_core::Server;
    use rpc_transport_tcp::{TcpChannel, TcpListener};

    // Server from the build script's code, client from the macro's, and back.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    let server = Server::builder()
        .add_service(examples::calc::CalcServer::new(CalcService::new()))
        .serve(listener)
        .unwrap();
    let client = via_macro::CalcClient::new(TcpChannel::new(addr));
    assert_eq!(client.add(40, 2).await.unwrap(), 42);
    let shape = via_macro::Shape {
        name: "sq".into(),
        points: vec![via_macro::Point { x: 1, y: 2 }],
        centre: None,
        op: via_macro::Op::Sub,
    };
    let scaled = client.scale(shape, 3.0).await.unwrap();
    assert_eq!(scaled.points, vec![via_macro::Point { x: 3, y: 6 }]);
    assert_eq!(
        client.apply(via_macro::Op::Div, 1.0, 0.0).await.unwrap(),
        via_macro::Outcome::Default {
            discriminant: 2,
            value: "division by zero".into()
        }
    );
    assert_eq!(via_macro::CALC_INTERFACE, examples::calc::CALC_INTERFACE);
    server.shutdown().await;
}
