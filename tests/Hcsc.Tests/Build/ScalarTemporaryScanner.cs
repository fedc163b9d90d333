using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Operations;

namespace Hcsc.Tests.Build;

/// <summary>
/// Finds temporary <c>TorchSharp.Scalar</c> objects in C# source with Roslyn's semantic model.
/// A temporary Scalar wraps a native handle that nothing keeps alive during the native call that reads it,
/// so the finalizer may free it while libtorch still uses it (dotnet/TorchSharp PR #1496).
/// </summary>
/// <remarks>
/// Three kinds of finding, each bound by the compiler, not matched as text:
/// <list type="bullet">
/// <item><b>conversion</b>: a user-defined conversion operator of <c>TorchSharp.Scalar</c> (implicit, or an explicit cast
/// that calls it), e.g. <c>x.mul_(0.5)</c>, <c>x.clamp(0, 1)</c>, <c>x.gt(t)</c>, <c>x.add_(y, alpha: a)</c> with a number.</item>
/// <item><b>inline</b>: a call returning a Scalar (e.g. <c>0.5.ToScalar()</c>) whose result goes straight into another call or
/// operator instead of into a variable that outlives the call.</item>
/// <item><b>member</b>: a call to a TorchSharp member whose own body makes such a temporary (a list read from the TorchSharp
/// source, see <see cref="FindTemporaryMembers"/>), e.g. <c>Tensor * double</c>, <c>Tensor + Tensor</c>, <c>Tensor.add_(Tensor)</c>
/// and <c>add_(Scalar)</c> (both make alpha = 1 implicitly), <c>square()</c> (<c>pow(2)</c>), <c>arange(stop)</c>, <c>ToDouble()</c>.</item>
/// </list>
/// </remarks>
internal static class ScalarTemporaryScanner
{
    internal const string ScalarTypeName = "TorchSharp.Scalar";

    internal sealed record Finding(string Path, int Line, string Kind, string Code);

    /// <summary>The global usings the SDK adds for ImplicitUsings=enable in a Microsoft.NET.Sdk project.</summary>
    private const string ImplicitUsings =
        "global using global::System;\n" +
        "global using global::System.Collections.Generic;\n" +
        "global using global::System.IO;\n" +
        "global using global::System.Linq;\n" +
        "global using global::System.Net.Http;\n" +
        "global using global::System.Threading;\n" +
        "global using global::System.Threading.Tasks;\n";

    /// <summary>Compiles every .cs file of a project folder (bin/ and obj/ left out) as its csproj does.</summary>
    internal static CSharpCompilation CompileProject(
        string projectDir, string assemblyName, IEnumerable<MetadataReference> references, bool implicitUsings = true,
        LanguageVersion languageVersion = LanguageVersion.Latest, IEnumerable<string>? preprocessorSymbols = null,
        OutputKind outputKind = OutputKind.DynamicallyLinkedLibrary)
    {
        var parse = new CSharpParseOptions(languageVersion, preprocessorSymbols: preprocessorSymbols);
        var trees = new List<SyntaxTree>();
        foreach (string file in Directory.EnumerateFiles(projectDir, "*.cs", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            string rel = "/" + Path.GetRelativePath(projectDir, file).Replace('\\', '/');
            if (rel.Contains("/bin/", StringComparison.Ordinal) || rel.Contains("/obj/", StringComparison.Ordinal))
            {
                continue;
            }

            trees.Add(CSharpSyntaxTree.ParseText(File.ReadAllText(file), parse, path: file));
        }

        if (implicitUsings)
        {
            trees.Add(CSharpSyntaxTree.ParseText(ImplicitUsings, parse, path: "ImplicitUsings.g.cs"));
        }

        var options = new CSharpCompilationOptions(outputKind, allowUnsafe: true, nullableContextOptions: NullableContextOptions.Enable);
        return CSharpCompilation.Create(assemblyName, trees, references, options);
    }

    /// <summary>
    /// Compiles source text (tests of the scanner itself; the package READMEs' examples as console programs with the
    /// SDK's implicit usings, see <c>PackageReadmeExampleTests</c>).
    /// </summary>
    internal static CSharpCompilation CompileText(
        string source, IEnumerable<MetadataReference> references, OutputKind outputKind = OutputKind.DynamicallyLinkedLibrary,
        bool implicitUsings = false, string assemblyName = "ScannerSample")
    {
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var trees = new List<SyntaxTree> { CSharpSyntaxTree.ParseText(source, parse, path: "Sample.cs") };
        if (implicitUsings)
        {
            trees.Add(CSharpSyntaxTree.ParseText(ImplicitUsings, parse, path: "ImplicitUsings.g.cs"));
        }

        return CSharpCompilation.Create(
            assemblyName,
            trees,
            references,
            new CSharpCompilationOptions(outputKind, nullableContextOptions: NullableContextOptions.Enable));
    }

    /// <summary>Every temporary Scalar in the trees that <paramref name="include"/> accepts.</summary>
    internal static IReadOnlyList<Finding> Scan(Compilation compilation, Func<SyntaxTree, bool> include, ISet<string> temporaryMembers)
    {
        var findings = new List<Finding>();
        foreach (var tree in compilation.SyntaxTrees.Where(include))
        {
            var model = compilation.GetSemanticModel(tree);
            var seen = new HashSet<(int, string)>();
            foreach (var root in RootOperations(model, tree))
            {
                foreach (var op in root.DescendantsAndSelf())
                {
                    string? kind = Classify(op, temporaryMembers);
                    if (kind is not null && seen.Add((op.Syntax.SpanStart, kind)))
                    {
                        var span = op.Syntax.GetLocation().GetLineSpan();
                        findings.Add(new Finding(tree.FilePath, span.StartLinePosition.Line + 1, kind, op.Syntax.ToString()));
                    }
                }
            }
        }

        return findings.OrderBy(f => f.Path, StringComparer.Ordinal).ThenBy(f => f.Line).ToList();
    }

    /// <summary>
    /// The public TorchSharp members that make a temporary Scalar in their own body or in a TorchSharp member they call
    /// (transitively), as documentation-comment ids. A conversion into a <c>using</c> variable does not count.
    /// </summary>
    /// <param name="torchSharp">The TorchSharp sources (src/TorchSharp of dotnet/TorchSharp), compiled.</param>
    /// <returns>Id → where the temporary is made, or which listed member is called.</returns>
    internal static SortedDictionary<string, string> FindTemporaryMembers(Compilation torchSharp)
    {
        var direct = new Dictionary<string, string>();
        var calls = new Dictionary<string, HashSet<string>>();
        var visible = new HashSet<string>();
        foreach (var tree in torchSharp.SyntaxTrees)
        {
            var model = torchSharp.GetSemanticModel(tree);
            foreach (var root in RootOperations(model, tree))
            {
                var owner = Owner(model, root.Syntax);
                if (owner is null)
                {
                    continue;
                }

                var ids = new List<string> { Id(owner) };
                if (owner is IMethodSymbol { AssociatedSymbol: IPropertySymbol property })
                {
                    ids.Add(Id(property));
                }

                if (IsVisible(owner))
                {
                    visible.UnionWith(ids);
                }

                foreach (var op in root.DescendantsAndSelf())
                {
                    string? made = op switch
                    {
                        IConversionOperation conv when IsScalar(conv.OperatorMethod?.ContainingType) && !IntoUsingVariable(conv) => "conversion",
                        IInvocationOperation inv when IsScalar(inv.Type) && IsInline(inv) => "inline",
                        _ => null,
                    };
                    var target = Target(op);
                    foreach (string id in ids)
                    {
                        if (made is not null && !direct.ContainsKey(id))
                        {
                            int line = op.Syntax.GetLocation().GetLineSpan().StartLinePosition.Line + 1;
                            direct[id] = $"{made} {op.Syntax.ToString().ReplaceLineEndings(" ")} ({Path.GetFileName(tree.FilePath)}:{line})";
                        }

                        if (target is not null)
                        {
                            if (!calls.TryGetValue(id, out var set))
                            {
                                calls[id] = set = [];
                            }

                            set.Add(Id(target));
                        }
                    }
                }
            }
        }

        var temporary = new Dictionary<string, string>(direct);
        for (bool changed = true; changed;)
        {
            changed = false;
            foreach (var (id, targets) in calls)
            {
                if (!temporary.ContainsKey(id) && targets.FirstOrDefault(temporary.ContainsKey) is { } callee)
                {
                    temporary[id] = "calls " + callee;
                    changed = true;
                }
            }
        }

        return new SortedDictionary<string, string>(
            temporary.Where(kv => visible.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value), StringComparer.Ordinal);
    }

    private static string? Classify(IOperation op, ISet<string> temporaryMembers)
    {
        if (op is IConversionOperation conv && IsScalar(conv.OperatorMethod?.ContainingType))
        {
            return "conversion";
        }

        if (op is IInvocationOperation inv && IsScalar(inv.Type) && IsInline(inv))
        {
            return "inline";
        }

        return Target(op) is { } target && temporaryMembers.Contains(Id(target)) ? "member " + Id(target) : null;
    }

    /// <summary>The member an operation calls: a method, a user-defined operator, a constructor or a property.</summary>
    private static ISymbol? Target(IOperation op) => op switch
    {
        IInvocationOperation inv => inv.TargetMethod,
        IBinaryOperation bin => bin.OperatorMethod,
        IUnaryOperation un => un.OperatorMethod,
        ICompoundAssignmentOperation ca => ca.OperatorMethod,
        IIncrementOrDecrementOperation inc => inc.OperatorMethod,
        IConversionOperation conv => conv.OperatorMethod,
        IObjectCreationOperation oc => oc.Constructor,
        IPropertyReferenceOperation pr => pr.Property,
        _ => null,
    };

    /// <summary>The operation trees of a file: method bodies, initializers, expression bodies.</summary>
    private static IEnumerable<IOperation> RootOperations(SemanticModel model, SyntaxTree tree)
    {
        foreach (var node in tree.GetRoot().DescendantNodes())
        {
            if (model.GetOperation(node) is { Parent: null } root)
            {
                yield return root;
            }
        }
    }

    /// <summary>The member whose body holds <paramref name="syntax"/> (lambdas and local functions count as their container).</summary>
    private static ISymbol? Owner(SemanticModel model, SyntaxNode syntax)
    {
        foreach (var node in syntax.AncestorsAndSelf())
        {
            switch (node)
            {
                case AccessorDeclarationSyntax or BaseMethodDeclarationSyntax:
                    return model.GetDeclaredSymbol(node);
                case PropertyDeclarationSyntax { ExpressionBody: not null } or IndexerDeclarationSyntax { ExpressionBody: not null }:
                    return (model.GetDeclaredSymbol(node) as IPropertySymbol)?.GetMethod;
                case BasePropertyDeclarationSyntax:
                    return model.GetDeclaredSymbol(node);
                case VariableDeclaratorSyntax { Parent.Parent: FieldDeclarationSyntax }:
                    return model.GetDeclaredSymbol(node);
            }
        }

        return null;
    }

    private static bool IsVisible(ISymbol symbol) =>
        symbol.DeclaredAccessibility is Accessibility.Public or Accessibility.Protected or Accessibility.ProtectedOrInternal
        && (symbol.ContainingType is null || IsVisible(symbol.ContainingType));

    /// <summary>A Scalar-valued call whose value is consumed on the spot: nothing names it, so nothing keeps it alive.</summary>
    private static bool IsInline(IOperation op)
    {
        var parent = op.Parent;
        while (parent is IConversionOperation or IParenthesizedOperation)
        {
            parent = parent.Parent;
        }

        return parent is IArgumentOperation or IBinaryOperation or IUnaryOperation or ICompoundAssignmentOperation or IInvocationOperation;
    }

    /// <summary><c>using Scalar s = 0.5;</c>: the conversion's result lives until the end of the scope.</summary>
    private static bool IntoUsingVariable(IOperation op) =>
        op.Parent is IVariableInitializerOperation { Parent: IVariableDeclaratorOperation { Parent: IVariableDeclarationOperation { Parent: IVariableDeclarationGroupOperation group } } }
        && group.Parent is IUsingDeclarationOperation or IUsingOperation;

    internal static bool IsScalar(ITypeSymbol? type) => type?.ToDisplayString() == ScalarTypeName;

    /// <summary>The member's documentation-comment id, e.g. <c>M:TorchSharp.torch.Tensor.add(TorchSharp.torch.Tensor)</c>.</summary>
    internal static string Id(ISymbol symbol) => symbol.OriginalDefinition.GetDocumentationCommentId() ?? symbol.ToDisplayString();

    /// <summary>Errors that leave code unbound (a finding could hide there); partial-method stubs of source generators aside.</summary>
    internal static ImmutableArray<Diagnostic> BindingErrors(Compilation compilation) =>
        compilation.GetDiagnostics()
            .Where(d => d.Severity == DiagnosticSeverity.Error && d.Id != "CS8795")
            .ToImmutableArray();
}
