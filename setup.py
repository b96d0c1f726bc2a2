"""mmext: OpenMMLab components (detection, segmentation, backbones, multimodal, recommendation).

Dependency ranges here are for people who bring their own environment; the tested pins live in
requirements/ and are installed by tools/setup_env.sh.
"""
import os.path as osp

from setuptools import find_packages, setup


def version() -> str:
    scope: dict = {}
    with open(osp.join(osp.dirname(__file__), 'mmext', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmext',
    version=version(),
    description='OpenMMLab plugin: FCOS, DETR, MaskFormer, Swin/ViT, ITC losses, '
    'sequential recommenders and fused ops for mmengine runners',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_packages(include=['mmext', 'mmext.*']),
    include_package_data=True,
    install_requires=[
        'torch>=2.1',
        'mmengine>=0.10.0,<1.0.0',
        'mmcv>=2.0.0rc4,<2.2.0',
        'numpy',
        'scipy',
        'pycocotools',
        'matplotlib',
    ],
    extras_require={
        'det': ['mmdet>=3.0.0,<3.4.0'],
        'seg': ['mmsegmentation>=1.0.0,<1.3.0', 'ftfy', 'regex'],
        'pretrain': ['mmpretrain>=1.0.0,<1.3.0'],
        'tests': ['pytest', 'pytest-timeout', 'hypothesis'],
    },
    license='Apache License 2.0',
    zip_safe=False,
)
