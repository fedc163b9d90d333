using System.Text.Json;
using Hcsc.Core.IO;
using Hcsc.Samples.ImageNetPretrain.Commands;
using TorchSharp;
using static Hcsc.Tests.Clustering.ClusteringTestData;
using static TorchSharp.torch;

namespace Hcsc.Tests.Clustering;

public sealed class ClusterCommandTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("hcsc-cluster-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void Cluster_writes_the_hierarchy_and_json_lines()
    {
        var (points, _) = Blobs(240, 6, 10, 2.0, 1.0, seed: 13);
        string features = Path.Combine(_directory, "features.npy");
        NpyFile.Write(features, ToTensor(points));
        string output = Path.Combine(_directory, "out");

        var (code, stdout, stderr) = Run("cluster", "--features", features, "--num-cluster", "12,5", "--niter", "5", "--nredo", "2", "--seed", "3", "--device", "cpu", "--normalize", "--output", output, "--json");

        code.Should().Be(0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        lines.Should().HaveCount(2);
        for (int l = 0; l < 2; l++)
        {
            using var json = JsonDocument.Parse(lines[l]);
            json.RootElement.GetProperty("level").GetInt32().Should().Be(l);
            json.RootElement.GetProperty("k").GetInt32().Should().Be(l == 0 ? 12 : 5);
            json.RootElement.GetProperty("objective").GetDouble().Should().BeGreaterThan(0);
            json.RootElement.GetProperty("empty_clusters_split").GetInt32().Should().BeGreaterThanOrEqualTo(0);
            json.RootElement.GetProperty("seconds").GetDouble().Should().BeGreaterThanOrEqualTo(0);
        }

        Directory.GetFiles(output).Select(Path.GetFileName).Should().BeEquivalentTo(
            "prototypes_0.npy", "prototypes_1.npy", "centroids_0.npy", "centroids_1.npy", "assignments_0.npy", "assignments_1.npy",
            "concentrations_0.npy", "concentrations_1.npy", "parents_0.npy", "levels.json");
        using var prototypes = NpyFile.ReadFloat32(Path.Combine(output, "prototypes_0.npy"));
        prototypes.shape.Should().Equal(12L, 6L);
        using var concentrations = NpyFile.ReadFloat32(Path.Combine(output, "concentrations_1.npy"));
        concentrations.mean().ToDouble().Should().BeApproximately(0.2, 1e-5);

        var a0 = ReadInt64(Path.Combine(output, "assignments_0.npy"));
        var a1 = ReadInt64(Path.Combine(output, "assignments_1.npy"));
        var parents = ReadInt64(Path.Combine(output, "parents_0.npy"));
        a0.Should().HaveCount(240).And.OnlyContain(c => c >= 0 && c < 12);
        a1.Should().Equal(a0.Select(c => parents[c]));
    }

    [Theory]
    [InlineData("nan", "*NaN*first is row 7*")]
    [InlineData("few", "*holds 5 embeddings, fewer than the 12 clusters*(--num-cluster 12,5)*lower --num-cluster*")]
    [InlineData("cube", "*2-D*")]
    [InlineData("zero-width", "*d = 0*")]
    public void Bad_input_fails_clearly_and_writes_nothing(string kind, string message)
    {
        using var data = kind switch
        {
            "nan" => randn(40, 3),
            "few" => randn(5, 3),
            "cube" => randn(4, 5, 3),
            _ => zeros(40, 0),
        };
        if (kind == "nan")
        {
            data[7, 2] = tensor(float.NaN);
        }

        string features = Path.Combine(_directory, $"{kind}.npy");
        NpyFile.Write(features, data);
        string output = Path.Combine(_directory, $"out-{kind}");

        var (code, _, stderr) = Run("cluster", "--features", features, "--num-cluster", "12,5", "--device", "cpu", "--output", output);

        code.Should().Be(2);
        stderr.Should().Match(message);
        Directory.Exists(output).Should().BeFalse();
        Directory.GetDirectories(_directory).Should().BeEmpty("no staging directory is left behind");
    }

    [Fact]
    public void A_non_empty_output_directory_is_refused()
    {
        string features = Path.Combine(_directory, "f.npy");
        NpyFile.Write(features, randn(40, 3));
        string output = Path.Combine(_directory, "full");
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "keep.txt"), "mine");

        var (code, _, stderr) = Run("cluster", "--features", features, "--num-cluster", "4", "--device", "cpu", "--output", output);

        code.Should().Be(2);
        stderr.Should().Contain("not empty");
        Directory.GetFiles(output).Select(Path.GetFileName).Should().Equal("keep.txt");
    }

    private static long[] ReadInt64(string path)
    {
        var bytes = File.ReadAllBytes(path);
        int header = 10 + (bytes[8] | (bytes[9] << 8));
        return Enumerable.Range(0, (bytes.Length - header) / 8).Select(i => BitConverter.ToInt64(bytes, header + (8 * i))).ToArray();
    }

    private static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        var (oldOut, oldError) = (Console.Out, Console.Error);
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        Console.SetOut(stdout);
        Console.SetError(stderr);
        try
        {
            int code = HcscCli.Create().Parse(args).Invoke();
            return (code, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldError);
        }
    }
}
