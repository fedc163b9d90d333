using System.Text.Json;
using Hcsc.Core.Options;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;
using static Hcsc.Tests.Models.ModelFixtures;

namespace Hcsc.Tests.Models;

public class PyTorchInteropTests
{
    // Width-4 ResNets: the largest reduction is a 3×3 convolution over 32 channels; ResNet-50 has 53 layers. PyTorch
    // computed the expected values in float32 with its own summation order.
    private static double Tolerance(Tensor expected) => FloatBounds.Network(9 * 32, 53, expected.abs().max().item<float>());

    private static ResNetOptions Tiny18(int classes = 10) =>
        new() { Arch = "resnet18", BaseWidth = 4, SmallImageStem = true, InputChannels = 3, NumClasses = classes };

    [Theory]
    [InlineData("resnet18", 4, 3, true, 10, "resnet18_w4_small")]
    [InlineData("resnet50", 4, 1, false, 7, "resnet50_w4_grey")]
    public void Torchvision_state_dicts_reproduce_pytorchs_outputs(string arch, int width, int channels, bool smallStem, int classes, string fixture)
    {
        using var scope = NewDisposeScope();
        using var net = ResNet.Create(new ResNetOptions { Arch = arch, BaseWidth = width, InputChannels = channels, SmallImageStem = smallStem, NumClasses = classes });
        var report = PyTorchImport.LoadTorchvision(net, PathOf(fixture + ".pth"));
        report.Loaded.Should().HaveCount(net.state_dict().Count);
        var expected = Expected(fixture + ".expected.pth");

        net.eval();
        using (no_grad())
        {
            MaxAbsDiff(net.Features(expected["input"]), expected["features"]).Should().BeLessThan(Tolerance(expected["features"]));
            MaxAbsDiff(net.forward(expected["input"]), expected["logits"]).Should().BeLessThan(Tolerance(expected["logits"]));
            net.train();
            MaxAbsDiff(net.forward(expected["input"]), expected["logits_train"]).Should().BeLessThan(Tolerance(expected["logits_train"]));
        }

        net.state_dict()["bn1.num_batches_tracked"].item<long>().Should().Be(8);   // 7 in the file, one training forward here
    }

    [Fact]
    public void Moco_checkpoint_loads_the_query_backbone_and_sets_the_rest_aside()
    {
        using var scope = NewDisposeScope();
        using var net = ResNet.Create(Tiny18(classes: 1000));
        var report = PyTorchImport.LoadPretraining(net, PathOf("moco_resnet18_w4.pth.tar"));
        report.Loaded.Should().HaveCount(net.state_dict().Count - 2).And.NotContain("fc.weight");
        report.SetAside.Should().Contain(["module.encoder_q.fc.0.weight", "module.encoder_q.fc.2.bias", "module.encoder_k.conv1.weight", "module.queue", "module.queue_ptr"]);
        var expected = Expected("moco_resnet18_w4.expected.pth");
        net.eval();
        using var noGrad = no_grad();
        MaxAbsDiff(net.Features(expected["input"]), expected["features"]).Should().BeLessThan(Tolerance(expected["features"]));
    }

    [Fact]
    public void Moco_checkpoint_loads_both_encoders_into_an_hcsc_model()
    {
        using var scope = NewDisposeScope();
        using var model = new HcscModel(new ModelOptions { Dim = 16, Mlp = true, BatchNormSplits = 2 }, () => ResNet.Create(Tiny18()));
        var report = PyTorchImport.LoadPretrainingModel(model, PathOf("moco_resnet18_w4.pth.tar"));
        report.SetAside.Should().BeEquivalentTo(["module.queue", "module.queue_ptr"]);
        report.Loaded.Should().HaveCount(model.state_dict().Count);
        var file = PyTorchStateDict.Read(PathOf("moco_resnet18_w4.pth.tar"));
        model.state_dict()["encoder_k.layer2.0.downsample.0.weight"].allclose(file["module.encoder_k.layer2.0.downsample.0.weight"], rtol: 0, atol: 0).Should().BeTrue();
        model.state_dict()["encoder_q.fc.2.weight"].allclose(file["module.encoder_q.fc.2.weight"], rtol: 0, atol: 0).Should().BeTrue();
        var expected = Expected("moco_resnet18_w4.expected.pth");
        MaxAbsDiff(model.BackboneFeatures(expected["input"]), expected["features"]).Should().BeLessThan(Tolerance(expected["features"]));
    }

    [Fact]
    public void Mismatched_files_give_one_error_listing_every_problem()
    {
        using var scope = NewDisposeScope();
        using var wrongArch = ResNet.Create(Tiny18() with { Arch = "resnet34" });
        var act = () => PyTorchImport.LoadTorchvision(wrongArch, PathOf("resnet18_w4_small.pth"));
        var error = act.Should().Throw<StateDictMismatchException>().Which;
        error.Missing.Should().Contain("layer3.5.conv1.weight");
        error.Message.Should().Contain("missing keys").And.Contain("layer2.3.bn2.running_var");

        using var wrongStem = ResNet.Create(Tiny18() with { SmallImageStem = false, NumClasses = 5 });
        var shapes = () => PyTorchImport.LoadTorchvision(wrongStem, PathOf("resnet18_w4_small.pth"));
        var mis = shapes.Should().Throw<StateDictMismatchException>().Which;
        mis.Misshaped.Should().HaveCount(3);   // conv1.weight, fc.weight, fc.bias
        mis.Message.Should().Contain("conv1.weight: [4, 3, 3, 3] in the file, [4, 3, 7, 7] in the module");

        using var wrongFile = ResNet.Create(Tiny18());
        var notMoco = () => PyTorchImport.LoadPretraining(wrongFile, PathOf("resnet18_w4_small.pth"));
        notMoco.Should().Throw<InvalidDataException>().WithMessage("*module.encoder_q.*");
    }

    [Fact]
    public void Legacy_format_files_are_refused_with_advice()
    {
        var act = () => PyTorchStateDict.Read(PathOf("legacy_format.pth"));
        act.Should().Throw<InvalidDataException>().WithMessage("*PyTorch 1.6 or later*re-save*");
        FluentActions.Invoking(() => PyTorchStateDict.Read(PathOf("no_such_file.pth"))).Should().Throw<FileNotFoundException>();
    }

    [Fact]
    public void Classifier_can_be_set_aside_on_torchvision_import()
    {
        using var scope = NewDisposeScope();
        using var net = ResNet.Create(Tiny18(classes: 0));
        var report = PyTorchImport.LoadTorchvision(net, PathOf("resnet18_w4_small.pth"), includeClassifier: false);
        report.SetAside.Should().BeEquivalentTo(["fc.weight", "fc.bias"]);
    }

    [Fact]
    public void Full_resnet50_names_and_shapes_are_torchvisions()
    {
        var expected = JsonSerializer.Deserialize<Dictionary<string, long[]>>(File.ReadAllText(PathOf("torchvision_resnet50_keys.json")))!;
        using var net = ResNet.Create(new ResNetOptions { Arch = "resnet50" });
        var ours = net.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        ours.Keys.Should().BeEquivalentTo(expected.Keys);
        foreach (var (name, shape) in expected)
        {
            ours[name].Should().Equal(shape, name);
        }
    }

    [Fact]
    public void ExportForPyTorch_round_trips_and_writes_what_python_checks()
    {
        using var scope = NewDisposeScope();
        var dir = Environment.GetEnvironmentVariable("HCSC_EXPORT_DIR") is { Length: > 0 } given ? given : Directory.CreateTempSubdirectory("hcsc-export-").FullName;
        manual_seed(11);

        // A small-stem backbone from an HCSC model: its fc is the projection head, so a fresh 10-class fc is written.
        using var model = new HcscModel(new ModelOptions { Dim = 8, Mlp = true, BatchNormSplits = 2 }, () => ResNet.Create(Tiny18()));
        var encoder = model.QueryEncoder;
        var path = Path.Combine(dir, "resnet18_w4_small_export.pth");
        var keys = PyTorchExport.ExportBackbone(encoder, path, classifierClasses: 10);
        keys.Should().Contain(["conv1.weight", "layer4.1.bn2.num_batches_tracked", "fc.weight", "fc.bias"]).And.NotContain("fc.0.weight");
        var back = PyTorchStateDict.Read(path);
        back["fc.weight"].shape.Should().Equal(10, 32);
        back["fc.bias"].abs().sum().item<float>().Should().Be(0);
        foreach (var (name, tensor) in encoder.state_dict().Where(kv => !kv.Key.StartsWith("fc.")))
        {
            back[name].allclose(tensor, rtol: 0, atol: 0).Should().BeTrue(name);
        }

        var input = randn(2, 3, 16, 16);
        encoder.eval();
        using (no_grad())
        {
            PyTorchStateDict.Write(Path.Combine(dir, "resnet18_w4_small_export.outputs.pth"), new Dictionary<string, Tensor> { ["input"] = input, ["features"] = encoder.Features(input) });
        }

        Directory.GetFiles(dir, "*.tmp").Should().BeEmpty();

        if (Environment.GetEnvironmentVariable("HCSC_EXPORT_DIR") is { Length: > 0 })
        {
            // Full-size ResNet-50 for torchvision.models.resnet50().load_state_dict (checked by make_fixtures.py --check-export).
            using var r50 = ResNet.Create(new ResNetOptions { Arch = "resnet50" });
            PyTorchExport.ExportBackbone(r50, Path.Combine(dir, "resnet50_export.pth"));
            r50.eval();
            var image = randn(1, 3, 64, 64);
            using var noGrad = no_grad();
            PyTorchStateDict.Write(Path.Combine(dir, "resnet50_export.outputs.pth"), new Dictionary<string, Tensor> { ["input"] = image, ["features"] = r50.Features(image) });
        }
        else
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
