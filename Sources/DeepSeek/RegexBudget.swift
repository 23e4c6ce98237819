/// Bounds on the module-name regular expressions read from files and flags (`quantization_config`
/// `targets` / `ignore` "re:" entries, `quantize --ignore`). They run on Foundation's
/// backtracking engine, which has no step budget, so patterns that can take exponential time are
/// refused before they run: a repeated group that itself contains a repetition or an alternation
/// (`(a+)+`, `(a|a)*`, `(.*)*`), and patterns over 1,000 characters. Module names are short and
/// real configs use flat patterns (`.*mlp.gate$`, `.*self_attn.*`), which pass.
public enum RegexBudget {
    public static let maxLength = 1000

    /// nil when the pattern is bounded; else why not.
    public static func refusal(_ pattern: String) -> String? {
        let c = Array(pattern.unicodeScalars)
        if c.count > maxLength { return "longer than \(maxLength) characters" }
        // Per open group: whether it holds a quantifier or an alternation.
        var stack: [(quantified: Bool, alternation: Bool)] = []
        var i = 0
        var lastClosed: (quantified: Bool, alternation: Bool)?
        while i < c.count {
            let ch = c[i]
            var closed: (quantified: Bool, alternation: Bool)?
            switch ch {
            case "\\":
                i += 2
                continue
            case "[":
                // A character class: skip to its closing bracket (a leading ']' is literal).
                var j = i + 1
                if j < c.count, c[j] == "^" { j += 1 }
                if j < c.count, c[j] == "]" { j += 1 }
                while j < c.count, c[j] != "]" { j += c[j] == "\\" ? 2 : 1 }
                i = j + 1
                lastClosed = nil
                continue
            case "(":
                stack.append((false, false))
            case ")":
                closed = stack.popLast() ?? (false, false)
            case "|":
                if !stack.isEmpty { stack[stack.count - 1].alternation = true }
            case "*", "+", "{":
                if let g = lastClosed, g.quantified || g.alternation {
                    return "a repeated group that itself repeats or alternates (exponential backtracking)"
                }
                if !stack.isEmpty { stack[stack.count - 1].quantified = true }
                if ch == "{" { while i < c.count, c[i] != "}" { i += 1 } }
            default:
                break
            }
            if let g = closed, !stack.isEmpty {
                // An inner group's repetition counts for the outer one too.
                if g.quantified { stack[stack.count - 1].quantified = true }
            }
            lastClosed = closed
            i += 1
        }
        return nil
    }
}
