using Hcsc.Models.Checkpoints;
using static TorchSharp.torch;

namespace Hcsc.Tests.Models;

/// <summary>Paths of the PyTorch fixtures (made by Fixtures/make_fixtures.py) and a reader for their expected outputs.</summary>
internal static class ModelFixtures
{
    public static string PathOf(string name) => Path.Combine(AppContext.BaseDirectory, "Models", "Fixtures", name);

    public static Dictionary<string, Tensor> Expected(string name) => PyTorchStateDict.Read(PathOf(name));

    public static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();
}
