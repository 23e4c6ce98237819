/// Expressions of the Jinja subset, each with its source location.
indirect enum Expr {
    case literal(Value, Location)
    case name(String, Location)
    case attribute(Expr, String, Location)
    case item(Expr, Expr, Location)
    case slice(Expr, Expr?, Expr?, Expr?, Location)
    case call(Expr, [Expr], [(String, Expr)], Location)
    case filter(Expr, String, [Expr], [(String, Expr)], Location)
    case test(Expr, String, [Expr], negated: Bool, Location)
    case unary(String, Expr, Location)
    case binary(String, Expr, Expr, Location)
    case conditional(then: Expr, condition: Expr, otherwise: Expr?, Location)
    case list([Expr], Location)
    case tuple([Expr], Location)
    case dict([(Expr, Expr)], Location)

    var location: Location {
        switch self {
        case .literal(_, let l), .name(_, let l), .attribute(_, _, let l), .item(_, _, let l), .slice(_, _, _, _, let l),
            .call(_, _, _, let l), .filter(_, _, _, _, let l), .test(_, _, _, _, let l), .unary(_, _, let l),
            .binary(_, _, _, let l), .conditional(_, _, _, let l), .list(_, let l), .tuple(_, let l), .dict(_, let l):
            return l
        }
    }
}

/// Where `{% set %}` stores: a variable or a namespace attribute.
enum SetTarget {
    case name(String)
    case names([String])
    case attribute(String, String)
}

/// Statements and output of a template.
indirect enum Node {
    case text(String)
    case output(Expr)
    case ifBlock([(Expr, [Node])], otherwise: [Node])
    case forBlock(targets: [String], iterable: Expr, filter: Expr?, body: [Node], otherwise: [Node], Location)
    case set(SetTarget, Expr, Location)
    case setBlock(String, [Node])
    case macro(Macro)
    case breakLoop(Location)
    case continueLoop(Location)
    /// transformers' `{% generation %}` marks assistant text for masks; it renders its body.
    case generation([Node])
}
