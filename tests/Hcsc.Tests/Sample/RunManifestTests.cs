using Hcsc.Core.Options;
using Hcsc.Samples.ImageNetPretrain.Commands;
using Hcsc.Samples.ImageNetPretrain.Training;

namespace Hcsc.Tests.Sample;

public sealed class RunManifestTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("hcsc-manifest-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void A_run_json_written_before_the_Objective_section_keeps_its_temperature_and_switches()
    {
        // The shape of run.json until the objective's options became one section: τ under Model, the switches under Selection.
        File.WriteAllText(Path.Combine(_directory, RunManifest.FileName), """
            {
              "Options": {
                "Model": { "Arch": "resnet18", "Dim": 16, "Mlp": true, "EncoderMomentum": 0.9, "QueueLength": 64, "Temperature": 0.1, "BatchNormSplits": 2 },
                "Training": { "Epochs": 3, "WarmupEpochs": 1, "BatchSize": 16, "LearningRate": 0.1, "SgdMomentum": 0.9, "WeightDecay": 0.0001,
                              "Cosine": true, "CheckpointEvery": 1, "Seed": 5, "Device": "cpu", "Workers": 1, "ScaledLearningRate": 0.00625 },
                "Clustering": { "NumClusters": [ 8, 4 ], "Iterations": 5, "Restarts": 1, "MaxPointsPerCentroid": 1000, "MinPointsPerCentroid": 10,
                                "ConcentrationLowPercentile": 10, "ConcentrationHighPercentile": 90 },
                "Selection": { "InstanceSelection": false, "PrototypeSelection": true, "SelectionOnLocalViews": false,
                               "UnselectedNegatives": "Exclude", "InstanceLevelReduction": "Mean", "ReproduceReferenceOffByOne": true },
                "Augmentation": { "AugPlus": true, "ImageSize": 16, "GlobalCropMinScale": 0.2, "MultiCrop": false,
                                  "LocalCropSizes": [ 192, 160, 128, 96 ], "LocalCropMinScales": [ 0.172, 0.143, 0.114, 0.086 ],
                                  "LocalCropMaxScales": [ 0.86, 0.715, 0.571, 0.429 ] }
              },
              "Settings": { "Dataset": "synthetic", "ExperimentDirectory": "runs/old", "Width": 8, "SmallStem": true, "MaxImages": 48 }
            }
            """);

        var manifest = RunManifest.TryRead(_directory)!;

        var objective = manifest.Options.Objective;
        objective.Temperature.Should().Be(0.1);
        objective.InstanceSelection.Should().BeFalse();
        objective.PrototypeSelection.Should().BeTrue();
        objective.SelectionOnLocalViews.Should().BeFalse();
        objective.UnselectedNegatives.Should().Be(UnselectedNegativeHandling.Exclude);
        objective.InstanceLevelReduction.Should().Be(LevelReduction.Mean);
        objective.ReproduceReferenceOffByOne.Should().BeTrue();
        manifest.Options.Model.Dim.Should().Be(16);
        manifest.Options.Clustering.NumClusters.Should().Equal(8, 4);
        manifest.Options.Clustering.Restarts.Should().Be(1);
        manifest.Options.Clustering.Seed.Should().Be(0, "settings an older run.json lacks keep their defaults");
        manifest.Settings.Width.Should().Be(8);
        HcscOptionsValidator.Problems(manifest.Options).Should().BeEmpty();
    }

    [Fact]
    public void A_manifest_reads_back_what_was_written()
    {
        var options = new HcscOptions();
        options.Objective.Temperature = 0.07;
        options.Objective.PrototypeSelection = false;
        options.Clustering.NumClusters = [30, 10];
        options.Clustering.Initialization = KMeansInitialization.KMeansPlusPlus;
        new RunManifest(options, new PretrainSettings { Width = 16 }).Write(_directory);

        var read = RunManifest.TryRead(_directory)!;
        read.Options.Objective.Temperature.Should().Be(0.07);
        read.Options.Objective.PrototypeSelection.Should().BeFalse();
        read.Options.Clustering.NumClusters.Should().Equal(30, 10);
        read.Options.Clustering.Initialization.Should().Be(KMeansInitialization.KMeansPlusPlus);
        read.Settings.Width.Should().Be(16);
        File.ReadAllText(Path.Combine(_directory, RunManifest.FileName)).Should().NotContain("\"Selection\"").And.Contain("\"Objective\"");
    }
}
