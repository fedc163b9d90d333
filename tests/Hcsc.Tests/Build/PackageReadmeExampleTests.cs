using System.Diagnostics;
using System.Reflection;
using System.Runtime.ExceptionServices;
using System.Runtime.Loader;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Xunit.Abstractions;

namespace Hcsc.Tests.Build;

/// <summary>
/// The example of each package's README (<c>src/&lt;Package&gt;/README.md</c>, packed into the package and shown on its
/// package page) is a complete top-level-statements program: it must compile against the package and what the package
/// brings in (its Hcsc dependencies, TorchSharp, its NuGet dependencies and the framework, nothing else) with the SDK's
/// implicit usings and nullable enabled, without errors or warnings, and must run.
/// </summary>
public partial class PackageReadmeExampleTests(ITestOutputHelper output)
{
    /// <summary>The packages under src/.</summary>
    public static TheoryData<string> Packages => new() { "Hcsc.Core", "Hcsc.Runtime", "Hcsc.Clustering", "Hcsc.Losses", "Hcsc.Models", "Hcsc.Distributed.Mpi" };

    [Theory]
    [MemberData(nameof(Packages))]
    public void The_README_example_compiles_against_the_package_and_runs(string package)
    {
        string path = Path.Combine(RepoRoot(), "src", package, "README.md");
        File.Exists(path).Should().BeTrue($"{path} is the README packed into {package}");
        string readme = File.ReadAllText(path);
        readme.Should().Contain($"dotnet add package {package}", "the README says how to install the package");

        var blocks = CSharpBlocks(readme);
        blocks.Should().ContainSingle($"{path} has one complete C# example, a top-level-statements program");

        var compilation = ScalarTemporaryScanner.CompileText(
            blocks[0], PackageReferences(package), OutputKind.ConsoleApplication, implicitUsings: true,
            assemblyName: package.Replace('.', '_') + "_ReadmeExample");
        using var pe = new MemoryStream();
        var emit = compilation.Emit(pe);
        var problems = emit.Diagnostics
            .Where(d => d.Severity >= DiagnosticSeverity.Warning && d.Id is not ("CS1701" or "CS1702"))
            .Select(d => d.ToString());
        string.Join(Environment.NewLine, problems).Should().BeEmpty(
            $"the ```csharp block of {path} must compile (Sample.cs(line,col) counts from the block's first line)");
        emit.Success.Should().BeTrue();

        var (console, elapsed) = Run(pe.ToArray(), package);
        output.WriteLine($"{package} README example ran in {elapsed.TotalSeconds:F2} s:");
        output.WriteLine(console);
        console.Should().NotBeNullOrWhiteSpace("the example prints what it did");
    }

    [Fact]
    public void The_own_encoder_guide_compiles_against_the_packages_and_its_clusters_follow_the_classes()
    {
        string path = Path.Combine(RepoRoot(), "docs", "own-encoder.md");
        var blocks = CSharpBlocks(File.ReadAllText(path));
        blocks.Should().ContainSingle($"{path} has one complete C# program");
        var compilation = ScalarTemporaryScanner.CompileText(
            blocks[0], PackageReferences("Hcsc.Losses", "Hcsc.Clustering", "Hcsc.Models", "Hcsc.Runtime"), OutputKind.ConsoleApplication, implicitUsings: true,
            assemblyName: "OwnEncoderGuide");
        using var pe = new MemoryStream();
        var emit = compilation.Emit(pe);
        string.Join(Environment.NewLine, emit.Diagnostics.Where(d => d.Severity >= DiagnosticSeverity.Warning && d.Id is not ("CS1701" or "CS1702")))
            .Should().BeEmpty($"the ```csharp block of {path} must compile");

        var (console, elapsed) = Run(pe.ToArray(), "own-encoder guide");
        output.WriteLine($"own-encoder guide ran in {elapsed.TotalSeconds:F2} s:");
        output.WriteLine(console);
        var nmi = NmiLine().Matches(console).Select(m => double.Parse(m.Groups["nmi"].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        nmi.Should().HaveCount(6, "six HCSC epochs after two of warm-up");
        nmi.Should().OnlyContain(v => v > 0.5, "the clusters of the key encoder's embeddings follow the six classes");
    }

    [GeneratedRegex(@"vs the fine labels (?<nmi>[0-9.]+)")]
    private static partial Regex NmiLine();

    [Fact]
    public void Each_package_packs_its_own_README()
    {
        string props = File.ReadAllText(Path.Combine(RepoRoot(), "src", "Directory.Build.props"));
        props.Should().Contain("<None Include=\"$(MSBuildProjectDirectory)/README.md\" Pack=\"true\" PackagePath=\"/\"",
            "each package's page shows src/<Package>/README.md, not the repository's README");
        props.Should().NotContain("../README.md");
    }

    /// <summary>The bodies of the ```csharp fences of a Markdown text, in order.</summary>
    internal static IReadOnlyList<string> CSharpBlocks(string markdown) =>
        CSharpFence().Matches(markdown.ReplaceLineEndings("\n")).Select(m => m.Groups["code"].Value).ToList();

    [GeneratedRegex(@"^```(?:csharp|cs|c#)[ \t]*\n(?<code>.*?)^```[ \t]*$", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex CSharpFence();

    /// <summary>
    /// What a project that references <paramref name="packages"/> (and a TorchSharp backend) compiles against: the
    /// framework, the package's assembly and every assembly it references transitively (Hcsc.Core, TorchSharp, its NuGet
    /// dependencies), taken from the assemblies this test runs with. Other Hcsc packages are left out.
    /// </summary>
    private static List<MetadataReference> PackageReferences(params string[] packages)
    {
        var all = ScalarTemporaryGuardTests.References();
        string frameworkDir = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        var closure = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var pending = new Stack<AssemblyName>(packages.Select(p => new AssemblyName(p)));
        while (pending.TryPop(out var name))
        {
            if (name.Name is null || !closure.Add(name.Name))
            {
                continue;
            }

            Assembly assembly;
            try
            {
                assembly = AssemblyLoadContext.Default.LoadFromAssemblyName(name);
            }
            catch (FileNotFoundException)
            {
                continue; // an optional dependency that is not deployed
            }

            foreach (var reference in assembly.GetReferencedAssemblies())
            {
                pending.Push(reference);
            }
        }

        closure.Should().Contain(packages is ["Hcsc.Runtime"] ? ["TorchSharp"] : ["Hcsc.Core", "TorchSharp"], "every package but Hcsc.Runtime builds on Hcsc.Core");
        return all.Where(r =>
                string.Equals(Path.GetDirectoryName(r.Display), frameworkDir, StringComparison.Ordinal)
                || closure.Contains(Path.GetFileNameWithoutExtension(r.Display!)))
            .ToList();
    }

    /// <summary>Loads the program into a collectible context and runs its entry point, capturing what it prints.</summary>
    private static (string Console, TimeSpan Elapsed) Run(byte[] image, string package)
    {
        var context = new AssemblyLoadContext($"{package} README example", isCollectible: true);
        var original = Console.Out;
        using var captured = new StringWriter();
        var clock = Stopwatch.StartNew();
        try
        {
            var entry = context.LoadFromStream(new MemoryStream(image)).EntryPoint;
            entry.Should().NotBeNull();
            Console.SetOut(captured);
            entry!.Invoke(null, entry.GetParameters().Length == 0 ? null : [Array.Empty<string>()]);
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            ExceptionDispatchInfo.Capture(e.InnerException).Throw();
        }
        finally
        {
            Console.SetOut(original);
            context.Unload();
        }

        return (captured.ToString(), clock.Elapsed);
    }

    private static string RepoRoot() => ScalarTemporaryGuardTests.RepoRoot();
}
