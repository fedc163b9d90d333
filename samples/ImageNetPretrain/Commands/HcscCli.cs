using System.CommandLine;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>The sample's command line: one root command, one subcommand per job.</summary>
public static class HcscCli
{
    /// <summary>Builds the root command with every subcommand.</summary>
    public static RootCommand Create()
    {
        var root = new RootCommand(
            "HCSC (Hierarchical Contrastive Selective Coding) pretraining and evaluation on TorchSharp. " +
            "Without a subcommand it runs 'pretrain' (by default on the built-in synthetic dataset).");
        PretrainCommand.Configure(root);
        root.Subcommands.Add(PretrainCommand.Create());
        root.Subcommands.Add(KnnCommand.Create());
        root.Subcommands.Add(LinearCommand.Create());
        root.Subcommands.Add(SemisupCommand.Create());
        root.Subcommands.Add(ClustersCommand.Create());
        root.Subcommands.Add(VisualizeCommand.Create());
        root.Subcommands.Add(CheckCommand.Create());
        root.Subcommands.Add(GpuCheckCommand.Create());
        root.Subcommands.Add(ClusterCommand.Create());
        return root;
    }
}
