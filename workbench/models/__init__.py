"""Model registry and architectures with named hook points.

>>> import workbench as wb
>>> wb.models.list_models("resnet*")[:3]
['resnet110', 'resnet14', 'resnet20']
"""
from . import captioner as _captioner  # noqa: F401
from . import dense as _dense  # noqa: F401
from . import halonet as _halonet  # noqa: F401
from . import hyperzzw as _hyperzzw  # noqa: F401  (registers)
from . import inception_resnet as _inception_resnet  # noqa: F401
from . import mlp as _mlp  # noqa: F401
from . import mobilenetv2 as _mobilenetv2  # noqa: F401
from . import packed as _packed  # noqa: F401
from . import poincare_resnet as _poincare_resnet  # noqa: F401
from . import recurrent as _recurrent  # noqa: F401
from . import resformer as _resformer  # noqa: F401
from . import resnet_cifar as _resnet_cifar  # noqa: F401
from . import restore as _restore  # noqa: F401
from . import retention as _retention  # noqa: F401
from . import simplenet as _simplenet  # noqa: F401
from . import vgg as _vgg  # noqa: F401
from . import text as _text  # noqa: F401
from . import tokens as _tokens  # noqa: F401
from . import video as _video  # noqa: F401
from . import vit as _vit  # noqa: F401
from ._registry import create_model, list_models, register_model
from .base import WorkbenchModel
from .count import layer_macs
from .dense import HRNet, RVQAutoencoder, SegResNet, SRDiscriminator, SRResNet, UNet
from .halonet import HaloAttention, HaloNet
from .hooks import HookPoint, count_parameters, hook_points
from .hyperzzw import HyperZZWNet
from .inception_resnet import InceptionBlock, InceptionResNet
from .mlp import MLP
from .mobilenetv2 import InvertedResidual, MobileNetV2
from .packed import PackedCifarResNet
from .poincare_resnet import PoincareResNet
from .recurrent import SequenceClassifier, SequenceModel, read_sequence
from .resformer import ResFormer
from .resnet_cifar import BasicBlock, CifarResNet
from .restore import DPENet, MIRNet, DiT, ResidualDenoiser
from .retention import RMT, ManhattanAttention
from .simplenet import SimpleNet
from .summary import ModelSummary, summary, summary_table
from .text import TextEncoder, TwoTower, VQANet
from .tokens import TokenStackGenerator
from .vgg import VGG
from .video import VideoClassifier, frame_differences
from .vit import VisionTransformer

__all__ = [
    "create_model", "list_models", "register_model", "WorkbenchModel", "HookPoint", "hook_points",
    "count_parameters", "layer_macs", "CifarResNet", "PackedCifarResNet", "BasicBlock", "MLP", "VisionTransformer",
    "summary", "summary_table", "ModelSummary", "MobileNetV2", "InvertedResidual", "SimpleNet", "VGG",
    "InceptionResNet", "InceptionBlock", "HyperZZWNet", "PoincareResNet",
    "RMT", "ManhattanAttention",
    "HaloAttention", "HaloNet", "ResFormer", "SequenceClassifier", "SequenceModel", "read_sequence", "VideoClassifier",
    "frame_differences", "TextEncoder", "TwoTower", "VQANet", "SegResNet", "HRNet", "UNet", "SRResNet",
    "SRDiscriminator", "RVQAutoencoder", "MIRNet", "DPENet", "DiT", "ResidualDenoiser", "TokenStackGenerator",
]
