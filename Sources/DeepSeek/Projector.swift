import Kernels

/// Sees the input of every projection as the forward pass runs it (calibration: activation
/// statistics, GPTQ Hessians, AWQ's activations). Routed experts report only their tokens.
public protocol LinearObserver: AnyObject {
    func linearInput(_ role: TensorRole, _ x: Matrix)
}

/// The one way the forward pass applies a projection: fetch the role's weight, report the input
/// to the observer, multiply.
struct Projector {
    let weights: WeightSource
    let threads: Int
    let observer: LinearObserver?

    func callAsFunction(_ role: TensorRole, _ x: Matrix) throws -> Matrix {
        let w = try weights.matrix(role)
        observer?.linearInput(role, x)
        return Linear.apply(x, w, threads: threads)
    }

    /// down(silu(gate(x)) · up(x)) for the MLP whose projections `role` names.
    func mlp(_ x: Matrix, _ role: (MLPProjection) -> TensorRole) throws -> Matrix {
        let g = try self(role(.gate), x)
        let u = try self(role(.up), x)
        return try self(role(.down), Ops.siluMul(g, u))
    }
}
