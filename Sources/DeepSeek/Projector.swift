import Kernels

/// Sees the input of every projection as the forward pass runs it (calibration: activation
/// statistics, GPTQ Hessians, AWQ's activations). Routed experts report only their tokens.
public protocol LinearObserver: AnyObject {
    func linearInput(_ role: TensorRole, _ x: Matrix)
}

/// The one way the forward pass applies a projection: fetch the role's weight, report the input
/// to the observer, multiply with the model's kernel backend.
struct Projector {
    let weights: WeightSource
    let threads: Int
    let observer: LinearObserver?
    var backend: LinearBackend = .fast

    func callAsFunction(_ role: TensorRole, _ x: Matrix) throws -> Matrix {
        let w = try weights.matrix(role)
        observer?.linearInput(role, x)
        return Linear.apply(x, w, threads: threads, backend: backend)
    }

    /// A weight already fetched (kv_b, shared by the naive and absorbed attention paths); the
    /// caller reports the input.
    func apply(_ x: Matrix, _ w: WeightMatrix) -> Matrix {
        Linear.apply(x, w, threads: threads, backend: backend)
    }

    /// down(silu(gate(x)) · up(x)) for the MLP whose projections `role` names.
    func mlp(_ x: Matrix, _ role: (MLPProjection) -> TensorRole) throws -> Matrix {
        let g = try self(role(.gate), x)
        let u = try self(role(.up), x)
        return try self(role(.down), Ops.siluMul(g, u))
    }
}
